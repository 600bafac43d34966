"""Helpers for the server tests: an in-process uvicorn server on a free loopback port."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time

import numpy as np


@contextlib.contextmanager
def running_server(config, models=None):
    """Serve `create_app(config)` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    from sana_edge.serve.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(config, models), host="127.0.0.1", port=0,
                                           log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def b64_pixels(data: str) -> np.ndarray:
    return pixels(base64.b64decode(data))


def sse_events(response):
    """(event, data dict) pairs from an httpx streaming response of server-sent events."""
    import json

    name, data = None, ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif not line and name:
            yield name, json.loads(data)
            name, data = None, ""
