"""TensorRT backend: engines from the export's `engines/` folder, run on one CUDA stream.

Same feed-dict contract as ONNX Runtime (sana_edge.backends.base). Before an engine is loaded,
its header is checked against this GPU and driver (trt_checks), so an unsupported GPU gets the
fix instead of a failed load. Each execution context gets its working memory from us
(`device_memory_size_v2` bytes, allocated once: engines are built with REQUIRE_USER_ALLOCATION)
and I/O buffers for the profile's largest shapes, so addresses never move and CUDA graphs stay
valid (trt_graphs). TensorRT-RTX's just-in-time kernels persist in a runtime cache file.
No torch: device memory and copies go through sana_edge.backends.cuda_driver.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..planner import StageSizes
from . import cuda_driver
from .trt_caches import DeviceMemoryRecord, RuntimeCacheFile, runtime_cache_path
from .trt_checks import REBUILD, check_engines, driver_problem
from .trt_flavor import import_tensorrt, shared_runtime
from .trt_graphs import GraphCache, resolve_mode

CAPTURE_FLAG = "REQUIRE_USER_ALLOCATION"  # RTX engines captured by hand must be built with it


def check_profile(component: str, profile: dict, feeds: dict) -> None:
    """Refuse input shapes outside the engine's optimization profile before touching the GPU."""
    for name, (low, _opt, high) in profile.items():
        shape = tuple(np.shape(feeds[name]))
        if len(shape) != len(low) or any(not a <= s <= b for s, a, b in zip(shape, low, high)):
            raise UserError(
                f"{component} input '{name}' has shape {shape}, outside the engine profile {tuple(low)}..{tuple(high)}; "
                "choose a size within the engine's range or rebuild with --min-size/--max-size"
            )


def engine_size_range(manifest) -> dict:
    return manifest.engines["range"]


def check_engine_size(manifest, height: int, width: int) -> None:
    """The transformer engine runs sizes within its profile; the decoder tiles anything larger."""
    rng = engine_size_range(manifest)
    low, high = rng["min_size"], rng["max_size"]
    if not (low <= height <= high and low <= width <= high):
        raise UserError(
            f"{width}x{height} px is outside the engines' range {low}..{high} px; choose a size within it or "
            f"rebuild with `sana-edge export ... --backend tensorrt --min-size/--max-size`"
        )


class TrtSession:
    def __init__(self, backend: "TensorRTBackend", engine, record: dict, component: str):
        trt = backend.flavor.trt
        self.device, self.component, self.profile = backend.device, component, record["profile"]
        self._runtime_cache = backend.runtime_cache
        self.engine = engine
        self.working_memory = cuda_driver.DeviceBuffer(engine.device_memory_size_v2)
        self.runtime_config = None
        self.context = self._create_context(backend)
        self.context.set_device_memory(self.working_memory.ptr.value, self.working_memory.nbytes)
        self.stream = cuda_driver.Stream()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        # Largest shapes: set every input to its profile max, read the outputs' shapes back.
        for name in self.input_names:
            self.context.set_input_shape(name, self.profile[name][2])
        max_shapes = {n: tuple(self.profile[n][2]) for n in self.input_names}
        max_shapes.update({n: tuple(self.context.get_tensor_shape(n)) for n in self.output_names})
        self.buffers = {n: cuda_driver.DeviceBuffer(int(np.prod(s)) * self.dtypes[n].itemsize) for n, s in max_shapes.items()}
        for name, buffer in self.buffers.items():
            self.context.set_tensor_address(name, buffer.ptr.value)
        hand_capture = backend.graphs == "manual" and (not backend.flavor.is_rtx or CAPTURE_FLAG in record.get("builder_flags", ()))
        self.graphs = GraphCache(self._capture, self._capturable) if hand_capture else None

    def _create_context(self, backend):
        """An execution context on our working memory, with TensorRT-RTX's runtime settings."""
        trt, engine = backend.flavor.trt, self.engine
        user_managed = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        if not hasattr(engine, "create_runtime_config"):  # full TensorRT before runtime configs
            return engine.create_execution_context(user_managed)
        config = engine.create_runtime_config()
        config.set_execution_context_allocation_strategy(user_managed)
        if backend.flavor.is_rtx:
            backend.runtime_cache.attach(config)
            builtin = backend.graphs == "builtin"
            config.cuda_graph_strategy = getattr(trt.CudaGraphStrategy, "WHOLE_GRAPH_CAPTURE" if builtin else "DISABLED")
            if backend.graphs == "manual":  # the warm-up run must already use the kernels that get captured
                config.dynamic_shapes_kernel_specialization_strategy = trt.DynamicShapesKernelSpecializationStrategy.EAGER
        self.runtime_config = config  # outlives the context
        return engine.create_execution_context(config)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_profile(self.component, self.profile, feeds)
        self.device.make_current()  # the caller may be another thread than the one that loaded us
        signature = tuple(tuple(np.shape(feeds[n])) for n in self.input_names)
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, array.shape)
            self.buffers[name].upload(array, self.stream)
        if self.graphs is None:
            self._enqueue()
        else:
            self.graphs.run(signature, self._enqueue)
        outputs = {}
        for name in self.output_names:
            out = np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self.buffers[name].download(out, self.stream)
            outputs[name] = out
        self.stream.synchronize()
        return {k: v.astype(np.float32, copy=False) for k, v in outputs.items()}

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.handle.value):
            raise RuntimeError(f"TensorRT failed to run the {self.component} engine")

    def _capturable(self) -> bool:
        check = getattr(self.context, "is_stream_capturable", None)  # TensorRT-RTX and recent TensorRT
        return True if check is None else bool(check(self.stream.handle.value))

    def _capture(self, enqueue):
        try:
            return cuda_driver.CudaGraph(self.stream, enqueue)
        except RuntimeError:
            return None  # not capturable after all: plain enqueues for this signature

    def close(self) -> None:
        if self.graphs is not None:
            self.graphs.drop()
        self.context = self.runtime_config = self.engine = None  # the context goes before its memory
        for buffer in (*self.buffers.values(), self.working_memory):
            buffer.free()
        self.stream.destroy()
        self._runtime_cache.save()  # kernels compiled while this engine ran


class TensorRTBackend:
    name = "tensorrt"
    memory_kind = "GPU memory"

    def __init__(self, manifest=None, flavor: str | None = None, graphs: str = "auto"):
        if not cuda_driver.gpu_available():
            raise UserError("the tensorrt backend needs an NVIDIA GPU and driver; use --backend onnxruntime here")
        # The TensorRT that built the export's engines, not whichever is found first.
        self.flavor = import_tensorrt(flavor or (manifest.engines.get("flavor") if manifest is not None else None))
        problem = driver_problem(self.flavor)
        if problem:
            raise UserError(problem)
        self.device = cuda_driver.Device(0)
        self.graphs = resolve_mode(graphs, self.flavor.is_rtx)
        self.runtime_cache = RuntimeCacheFile(runtime_cache_path(self.flavor, self.device.name))
        self.device_memory = DeviceMemoryRecord()
        self._checked: set = set()  # export folders whose engine headers passed the validity check

    def _deserialize(self, manifest, name: str):
        record = manifest.engines.get("components", {}).get(name)
        if record is None:
            raise UserError(
                f"export '{manifest.root}' has no TensorRT engines; rebuild it with `sana-edge export ... --backend tensorrt`"
            )
        if manifest.root not in self._checked:
            check_engines(manifest, self.flavor, self.device)
            self._checked.add(manifest.root)
        path = manifest.root / record["file"]
        self.device.make_current()
        engine = shared_runtime(self.flavor)[1].deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise UserError(f"{path} could not be loaded by {self.flavor.name} {self.flavor.version} on {self.device.name} "
                            f"(TensorRT's message above says why); {REBUILD} on this machine")
        self.device_memory.remember(record["sha256"], self.device.name, engine.device_memory_size_v2)
        return engine, record

    def load_component(self, manifest, name: str, low_memory: bool = False) -> TrtSession:
        # low_memory: an engine's memory is fixed by its profile; nothing to trade here.
        engine, record = self._deserialize(manifest, name)
        return TrtSession(self, engine, record, name)

    # -- what the memory planner asks (sana_edge.planner) --------------------------------------

    def stage_bytes(self, manifest) -> StageSizes:
        """Engine + working memory at the profile's largest shapes + I/O buffers, per stage."""
        sizes = {}
        for name, record in manifest.engines["components"].items():
            working = self.device_memory.get(record["sha256"], self.device.name)
            if working is None:  # first use on this GPU model: only a loaded engine can tell
                working = int(self._deserialize(manifest, name)[0].device_memory_size_v2)
            sizes[name] = int(record["bytes"]) + working + int(record.get("io_bytes", 0))
        min_tile = engine_size_range(manifest)["min_size"] // manifest.model.vae_scale_factor
        return StageSizes(sizes, engines=True, min_tile=min_tile)

    def memory_in_use(self) -> int:
        free, total = self.device.memory()
        return total - free

    def memory_budget(self) -> int:
        return self.device.memory()[1]

    def max_decoder_tile(self, manifest) -> int | None:
        return engine_size_range(manifest)["decoder_tile"] // manifest.model.vae_scale_factor

    def check_size(self, manifest, height: int, width: int) -> None:
        check_engine_size(manifest, height, width)

    def describe(self) -> str:
        return (f"{self.flavor.name} {self.flavor.version} on {self.device.name} (sm_{self.device.compute_capability}), "
                f"CUDA graphs: {self.graphs}")
