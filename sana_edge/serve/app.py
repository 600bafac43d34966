"""The ASGI app of `sana-edge serve`: OpenAI Images API, models, health, metrics, the web page.

Routes
  POST /v1/images/generations   OpenAI Images API (+ sana-edge fields); `"stream": true` answers
                                with server-sent events: queued, progress per step, completed
  GET  /v1/images/files/{name}  PNGs this server wrote for `response_format: url`
  GET  /v1/models[/{id}]        the exports served
  GET  /healthz, GET /metrics   liveness (no key needed) and Prometheus metrics
  GET  /                        the web page
The same app runs under uvicorn (`sana-edge serve`) and as a Ray Serve replica (ray_app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from .engine import Cancelled, Engine, load_models
from .errors import ApiError, server_error, shutting_down
from .images import ImageStore
from .metrics import ServerMetrics
from .page import page_response
from .schema import Limits, check_types, parse_body, parse_request
from .security import ApiKeyMiddleware, BodyLimitMiddleware, error_response


@dataclass(frozen=True)
class ServeConfig:
    models: tuple[Path, ...]
    max_queue: int = 4  # requests waiting beyond the one running
    max_pixels: int = 1024 * 1024
    max_body_bytes: int = 256 * 1024  # a prompt is a few hundred tokens; 256 KiB is plenty
    api_key: str | None = None
    output_dir: Path | None = None  # where `url` images go (default: a temp folder, removed at exit)
    cors_origins: tuple[str, ...] = ()  # none: browsers refuse other sites' scripts
    verify: bool = True  # sha256 of the export files at load
    threads: int | None = None  # ONNX Runtime intra-op threads (default: all cores)
    url_secret: str | None = None  # signs `url` file names (default: random per server)
    trust_disconnect: bool = True  # False behind Ray Serve (see security.BodyLimitMiddleware)


# Which process answered: behind Ray Serve several replicas share one address.
WORKER_HEADER = {"X-Sana-Edge-Worker": f"{socket.gethostname()}/{os.getpid()}"}


class ClientGone(Exception):
    """The client disconnected while its request waited or ran."""


def _count_error(metrics: ServerMetrics, error: ApiError) -> None:
    metrics.errors.labels(status=str(error.status), code=str(error.code)).inc()


async def _result_or_cancel(job, request: Request):
    """The job's images; cancels the job (before its next step) if the client disconnects."""
    try:
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(job.future), timeout=0.2)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise ClientGone() from None
    finally:
        if not job.future.done():
            job.cancel()


def _image_item(image, request, store: ImageStore | None, base_url: str) -> dict:
    item = {"revised_prompt": request.prompt, "seed": image.seed, "timings": image.timings}
    if request.response_format == "url":
        item["url"] = f"{base_url}v1/images/files/{store.write(image.png)}"
    else:
        import base64

        item["b64_json"] = base64.b64encode(image.png).decode("ascii")
    return item


def _sse(event: str, data: dict) -> bytes:
    import json

    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def create_app(config: ServeConfig, models: list | None = None) -> Starlette:
    """The app; `models` (from engine.load_models) are loaded at startup when not given."""
    metrics = ServerMetrics()
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loaded = models or await asyncio.to_thread(load_models, list(config.models), config.verify, config.threads)
        state["engine"] = Engine(loaded, config.max_queue, metrics)
        state["store"] = ImageStore(config.output_dir, config.url_secret)
        state["started"] = int(time.time())
        try:
            yield
        finally:
            # uvicorn has already waited (up to --shutdown-grace) for open requests; what is still
            # running now is cancelled at its next step, and no file is left half-written.
            await asyncio.to_thread(state["engine"].close)
            state["store"].close()

    async def generations(request: Request):
        engine: Engine = state["engine"]
        body = parse_body(await request.body())
        check_types(body)
        model = engine.pick(body.get("model"), body.get("precision"))
        image_request = parse_request(body, Limits(config.max_pixels, model.multiple, model.default_size))
        start = time.perf_counter()
        if image_request.stream:
            return _stream(engine, image_request, model, str(request.base_url), start)
        job = engine.submit(image_request, model)
        try:
            images = await _result_or_cancel(job, request)
        except (ClientGone, Cancelled):
            return Response(status_code=499)  # nobody reads it; the generation stopped
        data = [_image_item(image, image_request, state["store"], str(request.base_url)) for image in images]
        metrics.images.labels(model=model.id).inc(len(images))
        metrics.stage_seconds.labels(stage="total").observe(time.perf_counter() - start)
        return JSONResponse({"created": int(time.time()), "data": data, "model": model.id,
                             "size": image_request.size, "output_format": "png"}, headers=WORKER_HEADER)

    def _stream(engine, image_request, model, base_url, start):
        events: asyncio.Queue = asyncio.Queue()
        job = engine.submit(image_request, model, on_event=events.put_nowait)  # 429 here, before the stream
        job.future.add_done_callback(lambda _: events.put_nowait(None))

        async def produce():
            try:
                while (event := await events.get()) is not None:
                    yield _sse(event["type"], event)
                try:
                    images = job.future.result()
                except (ApiError, Cancelled) as exc:
                    error = exc if isinstance(exc, ApiError) else shutting_down()
                    _count_error(metrics, error)
                    yield _sse("error", error.body())
                    return
                for index, image in enumerate(images):
                    item = _image_item(image, image_request, state["store"], base_url)
                    item.update(type="image_generation.completed", image_index=index, created_at=int(time.time()),
                                size=f"{image.width}x{image.height}", output_format="png", model=model.id)
                    yield _sse(item["type"], item)
                metrics.images.labels(model=model.id).inc(len(images))
                metrics.stage_seconds.labels(stage="total").observe(time.perf_counter() - start)
            finally:  # the client went away mid-stream (Starlette cancels this generator) or all sent
                job.cancel()

        return StreamingResponse(produce(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **WORKER_HEADER})

    async def image_file(request: Request):
        path = state["store"].path(request.path_params["name"])
        if path is None:
            raise ApiError(404, "No image by that name on this server (it serves only images it wrote).",
                           param="name", code="not_found")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    def _model_card(model) -> dict:
        return {"id": model.id, "object": "model", "created": state["started"], "owned_by": "sana-edge",
                "precision": model.precision, "default_size": f"{model.default_size}x{model.default_size}",
                "size_multiple": model.multiple, "max_pixels": config.max_pixels}

    async def list_models(request: Request):
        return JSONResponse({"object": "list", "data": [_model_card(m) for m in state["engine"].models.values()]})

    async def get_model(request: Request):
        engine: Engine = state["engine"]
        model = engine.pick(request.path_params["model"], None)
        return JSONResponse(_model_card(model))

    async def healthz(request: Request):
        engine: Engine = state.get("engine")
        if engine is None or engine.closed:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__, "worker": WORKER_HEADER["X-Sana-Edge-Worker"],
                             "queue": engine.queue_length, "busy": engine.busy, "models": list(engine.models)})

    async def metrics_route(request: Request):
        if "engine" in state:
            metrics.queue_length.set(state["engine"].queue_length)
        return Response(metrics.render(), media_type=metrics.content_type)

    async def on_api_error(request: Request, error: ApiError):
        _count_error(metrics, error)
        return error_response(error)

    async def on_http_error(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return await on_api_error(request, ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                                    f"{exc.detail}", code=code))

    async def on_crash(request: Request, exc: Exception):
        return await on_api_error(request, server_error(f"internal error: {type(exc).__name__}"))

    middleware = [Middleware(BodyLimitMiddleware, limit=config.max_body_bytes, trust_disconnect=config.trust_disconnect,
                             on_error=lambda e: _count_error(metrics, e))]
    if config.api_key:
        middleware.insert(0, Middleware(ApiKeyMiddleware, api_key=config.api_key,
                                        on_error=lambda e: _count_error(metrics, e)))
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                        allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"]))
    routes = [
        Route("/", page_response, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model}", get_model, methods=["GET"]),
        Route("/v1/images/generations", generations, methods=["POST"]),
        Route("/v1/images/files/{name}", image_file, methods=["GET"]),
    ]
    handlers = {ApiError: on_api_error, HTTPException: on_http_error, Exception: on_crash}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
    app.state.metrics = metrics
    return app
