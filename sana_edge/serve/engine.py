"""The generator behind the HTTP routes: the loaded exports, one worker thread and a bounded queue.

One worker runs one request at a time: ONNX Runtime already spreads one image over every core,
so two at once would only split the cores and double the memory. The queue is bounded: a
request beyond `max_queue` waiting gets 429 with a Retry-After estimated from recent requests.
Each job carries a cancel flag, checked after every denoising step (the pipeline's `on_step`),
so a request whose client went away stops before its next step.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..image_io import png_bytes
from .errors import invalid, queue_full, server_error, shutting_down
from .metrics import ServerMetrics
from .schema import ImageRequest


class Cancelled(Exception):
    """Raised from `on_step` to stop a generation whose client is gone (or at shutdown)."""


@dataclass(frozen=True)
class ServedModel:
    id: str
    precision: str
    path: Path
    multiple: int  # width and height are multiples of this
    default_size: int
    pipeline: object = field(compare=False, repr=False)


def load_models(folders: list[Path], verify: bool = True, threads: int | None = None) -> list[ServedModel]:
    """Load each export once (sha256-verified unless `verify` is off); ids are the folder names."""
    from ..pipeline import SanaEdgePipeline

    models: list[ServedModel] = []
    for folder in folders:
        options = {"threads": threads} if threads else {}
        pipe = SanaEdgePipeline.from_export(folder, verify=verify, keep_loaded=True, **options)
        model = ServedModel(Path(folder).resolve().name, pipe.manifest.precision, Path(folder),
                            pipe.manifest.model.vae_scale_factor, pipe.default_size, pipe)
        for other in models:
            if model.id == other.id or model.precision == other.precision:
                raise UserError(f"exports '{other.path}' and '{folder}' share the name or precision "
                                f"({model.id}, {model.precision}); serve one export per precision, in folders "
                                "with different names")
        models.append(model)
    return models


@dataclass
class GeneratedImage:
    png: bytes
    seed: int
    width: int
    height: int
    timings: dict


@dataclass
class Job:
    request: ImageRequest
    model: ServedModel
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    on_event: Callable[[dict], None] | None  # called on the event loop
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, event: dict) -> None:
        """From the worker thread: hand a progress event to the request's event loop."""
        if self.on_event is not None:
            self.loop.call_soon_threadsafe(self.on_event, event)

    def settle(self, result=None, error: BaseException | None = None) -> None:
        def apply():
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(apply)


class Engine:
    def __init__(self, models: list[ServedModel], max_queue: int, metrics: ServerMetrics):
        self.models = {m.id: m for m in models}
        self.max_queue = max_queue
        self.metrics = metrics
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._closed = False
        self._ready = threading.Condition()
        self._seconds_per_request = 1.0  # moving average, for Retry-After
        self._worker = threading.Thread(target=self._work, name="sana-edge-generator", daemon=True)
        self._worker.start()

    # -- the event loop's side ----------------------------------------------------------------

    def pick(self, model_id: str | None, precision: str | None) -> ServedModel:
        """The export a request asks for: by OpenAI's `model`, by `precision`, else the first."""
        from .errors import model_not_found

        if model_id is not None:
            if model_id not in self.models:
                raise model_not_found(model_id, list(self.models))
            model = self.models[model_id]
            if precision is not None and precision != model.precision:
                raise invalid(f"Model '{model.id}' is {model.precision}, not '{precision}'; "
                              "leave out 'precision' or 'model'.", param="precision")
            return model
        if precision is None:
            return next(iter(self.models.values()))
        for model in self.models.values():
            if model.precision == precision:
                return model
        served = ", ".join(m.precision for m in self.models.values())
        raise invalid(f"Invalid value for 'precision': '{precision}' is not served here; "
                      f"choose one of: {served}.", param="precision")

    def submit(self, request: ImageRequest, model: ServedModel, on_event=None) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(request, model, loop, loop.create_future(), on_event)
        with self._ready:
            if self._closed:
                raise shutting_down()
            if len(self._waiting) >= self.max_queue:
                raise queue_full(self.retry_after(), len(self._waiting))
            self._waiting.append(job)
            self.metrics.queue_length.set(len(self._waiting))
            self._ready.notify()
        job.emit({"type": "image_generation.queued", "ahead": self.ahead_of(job)})
        return job

    def ahead_of(self, job: Job) -> int:
        """How many requests run or wait before `job` (0: it runs now or next)."""
        with self._ready:
            if job is self._running or job not in self._waiting:
                return 0
            return self._waiting.index(job) + (self._running is not None)

    def retry_after(self) -> int:
        return max(1, math.ceil(self._seconds_per_request * (len(self._waiting) + 1)))

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        return self._running is not None

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, cancel what waits and what runs (it stops after its current step)."""
        with self._ready:
            self._closed = True
            pending = list(self._waiting)
            self._waiting.clear()
            if self._running is not None:
                self._running.cancel()
            self._ready.notify_all()
        for job in pending:
            job.settle(error=shutting_down())
        self._worker.join(timeout)

    # -- the worker thread --------------------------------------------------------------------

    def _next(self) -> Job | None:
        with self._ready:
            while not self._waiting and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            self._running = self._waiting.popleft()
            self.metrics.queue_length.set(len(self._waiting))
            return self._running

    def _work(self) -> None:
        while (job := self._next()) is not None:
            start = time.perf_counter()
            self.metrics.in_flight.set(1)
            try:
                if job.cancelled.is_set():
                    raise Cancelled()
                self.metrics.stage_seconds.labels(stage="queue_wait").observe(start - job.enqueued)
                job.settle(result=self._generate(job))
            except Cancelled:
                self.metrics.cancelled.inc()
                job.settle(error=shutting_down() if self._closed else Cancelled())
            except UserError as exc:  # a size the backend refuses, a budget no plan fits
                job.settle(error=invalid(str(exc)))
            except Exception as exc:  # noqa: BLE001 (one bad request must not stop the server)
                job.settle(error=server_error(f"generation failed: {type(exc).__name__}: {exc}"))
            finally:
                elapsed = time.perf_counter() - start
                with self._ready:
                    self._running = None
                self.metrics.in_flight.set(0)
                self._seconds_per_request = 0.7 * self._seconds_per_request + 0.3 * elapsed

    def _generate(self, job: Job) -> list[GeneratedImage]:
        import numpy as np

        request, model = job.request, job.model
        base_seed = request.seed if request.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        images = []
        for index in range(request.n):
            seed = base_seed + index

            def on_step(done, total, _latents, index=index):
                if job.cancelled.is_set():
                    raise Cancelled()
                job.emit({"type": "image_generation.progress", "image_index": index, "n": request.n,
                          "step": done, "steps": total})

            result = model.pipeline.generate(
                request.prompt, negative_prompt=request.negative_prompt, height=request.height,
                width=request.width, steps=request.steps, guidance_scale=float(request.guidance_scale),
                seed=seed, on_step=on_step)
            timings = {k: result.timings[k] for k in ("text_encoder", "denoise", "decode") if k in result.timings}
            start = time.perf_counter()
            png = png_bytes(result.image, {
                "prompt": request.prompt, "negative_prompt": request.negative_prompt, "seed": seed,
                "steps": request.steps, "guidance": float(request.guidance_scale), "size": request.size,
                "precision": model.precision, "model": model.id})
            timings["png"] = time.perf_counter() - start
            self.metrics.observe_stages(timings)
            images.append(GeneratedImage(png, seed, result.image.width, result.image.height, timings))
        return images
