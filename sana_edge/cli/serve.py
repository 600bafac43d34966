"""`sana-edge serve`: the OpenAI-compatible image server (uvicorn, or Ray Serve with --ray)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..checks import THREADS, Limit
from ..default_model import default_export_dir
from ..errors import UserError
from .app import app, number_option, require_extra

PORT = Limit(0, 65535)
QUEUE = Limit(0, 10_000)
PIXELS = Limit(32 * 32, 8192 * 8192)  # the largest image any run makes (sana_edge.checks.IMAGE_SIDE)
BODY_BYTES = Limit(1024, 64 << 20)
GRACE_SECONDS = Limit(0.0, 3600.0)


def resolve_models(models: list[Path]) -> list[Path]:
    """The export folders to use (default: the exported built-in model); each must have a manifest."""
    from ..manifest import MANIFEST_NAME

    if not models:
        default = default_export_dir()
        if not (default / MANIFEST_NAME).is_file():
            raise UserError(f"no --model given and the built-in model is not exported yet ({default}); "
                            "run `sana-edge export` (or `make demo`) first, or pass --model DIR")
        return [default]
    for folder in models:
        if not (folder / MANIFEST_NAME).is_file():
            raise UserError(f"'{folder}' is not an export folder (no {MANIFEST_NAME}); make one with `sana-edge export`")
    return models


def check_can_listen(host: str, port: int) -> None:
    """Fail in one line now (before loading models) if host:port cannot be bound."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host") from None


@app.command()
def serve(
    model: Optional[list[Path]] = typer.Option(
        None, "--model", "-m", help="Export folder; repeat for several precisions (requests pick one with "
        "'precision' or 'model'). Default: the exported built-in model."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default; others need --api-key)."),
    port: int = number_option(8000, "--port", limit=PORT, help="Port to bind."),
    api_key: Optional[str] = typer.Option(
        None, envvar="SANA_EDGE_API_KEY", show_envvar=True,
        help="Require 'Authorization: Bearer KEY' on the API (the page asks for it)."),
    max_queue: int = number_option(4, "--max-queue", limit=QUEUE,
                                   help="Requests that may wait; beyond it: 429 with Retry-After."),
    max_pixels: int = number_option(1024 * 1024, "--max-pixels", limit=PIXELS,
                                    help="Largest width*height one request may ask for."),
    max_body: int = number_option(256 * 1024, "--max-body", limit=BODY_BYTES,
                                  help="Largest request body in bytes (413 beyond)."),
    output_dir: Optional[Path] = typer.Option(
        None, help="Keep the images of `url` responses here (default: a temp folder removed at exit)."),
    cors_origin: Optional[list[str]] = typer.Option(
        None, help="Allow browser scripts from this origin (repeatable; default: none)."),
    threads: Optional[int] = number_option(None, "--threads", limit=THREADS,
                                           help="ONNX Runtime threads (default: all cores)."),
    shutdown_grace: float = number_option(
        30.0, "--shutdown-grace", limit=GRACE_SECONDS,
        help="Seconds to let open requests finish at shutdown before cancelling them."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
    ray: Optional[str] = typer.Option(
        None, "--ray", is_flag=False, flag_value="", metavar="[ADDRESS]",
        help="Run as a Ray Serve deployment: join the cluster at ADDRESS (HOST:PORT or auto); alone, "
             "Ray's default (RAY_ADDRESS, else a local Ray)."),
    replicas: int = number_option(1, "--replicas", limit=THREADS,
                                  help="With --ray: replicas of the server, spread over the cluster."),
    cpus_per_replica: int = number_option(1, "--cpus-per-replica", limit=THREADS,
                                          help="With --ray: CPUs per replica = its ONNX Runtime threads."),
):
    """Serve images over HTTP: OpenAI Images API, a web page at /, metrics at /metrics."""
    require_extra("serve", ("starlette", "uvicorn", "prometheus_client"))
    from ..serve.app import ServeConfig
    from ..serve.security import is_loopback

    folders = resolve_models(list(model or []))
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir '{output_dir}' is a file; give a folder")
    key = api_key or None
    if not is_loopback(host) and not key:
        print(f"warning: binding {host} without an API key: anyone who can reach this address can use the "
              "server; set --api-key or SANA_EDGE_API_KEY", file=sys.stderr)
    config = ServeConfig(models=tuple(folders), max_queue=max_queue, max_pixels=max_pixels, max_body_bytes=max_body,
                         api_key=key, output_dir=output_dir, cors_origins=tuple(cors_origin or ()),
                         verify=not no_verify, threads=cpus_per_replica if ray is not None else threads)
    if ray is not None:
        require_extra("ray", ("ray", "ray.serve"))
        from ..serve.ray_app import run_on_ray_serve

        run_on_ray_serve(config, ray or None, replicas, host, port)
        return
    import uvicorn

    from ..serve.app import create_app
    from ..serve.engine import load_models

    check_can_listen(host, port)
    loaded = load_models(list(folders), config.verify, threads)  # a bad export fails here, in one line
    print(f"sana-edge serving {', '.join(str(f) for f in folders)} on http://{host}:{port} "
          f"(page at /, API at /v1, pid {os.getpid()})", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config, loaded), host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=shutdown_grace, access_log=False))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind (a race with check_can_listen) or start
        server.started = False
    if not server.started:
        raise UserError(f"the server could not start on {host}:{port} (is the port in use?); pick another --port")
