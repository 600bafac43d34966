"""Run the app on a loopback port in a background thread: for tests, benchmarks and notebooks
(`sana-edge serve` runs uvicorn in the foreground instead)."""

from __future__ import annotations

import contextlib
import threading
import time


@contextlib.contextmanager
def running_server(config, models=None, start_timeout: float = 120.0):
    """Serve `create_app(config, models)` on 127.0.0.1 (a free port); yields the base URL and
    stops the server (graceful shutdown, as on SIGTERM) on exit."""
    import uvicorn

    from .app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(config, models), host="127.0.0.1", port=0,
                                           log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="sana-edge-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
