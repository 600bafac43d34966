"""TensorRT backend: engines from the export's `engines/` folder, run on one CUDA stream.

Same feed-dict contract as ONNX Runtime (sana_edge.backends.base). Buffers are allocated once
for the engine profile's largest shapes; a run whose shapes repeat the previous run's (every
denoising step after the first) replays a captured CUDA graph instead of re-enqueuing kernels.
No torch: device memory and copies go through sana_edge.backends.cuda_driver.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from . import cuda_driver
from .trt_flavor import check_engine_record, import_tensorrt


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
    def __init__(self, flavor, device, engine_path: Path, record: dict, component: str, cuda_graphs: bool = True):
        trt = flavor.trt
        check_engine_record(record, flavor.name, flavor.version, device.compute_capability, component)
        self.component, self.profile = component, record["profile"]
        self._logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise UserError(
                f"{engine_path} could not be loaded by {flavor.name} {flavor.version} (truncated, or built for another "
                "GPU or TensorRT); rebuild with `sana-edge export CHECKPOINT -o OUT --backend tensorrt`"
            )
        self.context = self.engine.create_execution_context()
        self.stream = cuda_driver.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        # Largest shapes: set every input to its profile max, read the outputs' shapes back.
        for name in self.input_names:
            self.context.set_input_shape(name, self.profile[name][2])
        max_shapes = {n: tuple(self.profile[n][2]) for n in self.input_names}
        max_shapes.update({n: tuple(self.context.get_tensor_shape(n)) for n in self.output_names})
        self.buffers = {n: cuda_driver.DeviceBuffer(int(np.prod(s)) * self.dtypes[n].itemsize) for n, s in max_shapes.items()}
        for name, buffer in self.buffers.items():
            self.context.set_tensor_address(name, buffer.ptr.value)
        self._graphs: dict = {}
        self.cuda_graphs = cuda_graphs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_profile(self.component, self.profile, feeds)
        signature = tuple(tuple(np.shape(feeds[n])) for n in self.input_names)
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, array.shape)
            self.buffers[name].upload(array, self.stream)
        graph = self._graphs.get(signature)
        if graph is not None:
            graph.launch()
        else:
            self._enqueue()
            if self.cuda_graphs and signature not in self._graphs:
                self._graphs[signature] = self._capture()  # the first run warmed up the kernels
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

    def _capture(self):
        try:
            return cuda_driver.CudaGraph(self.stream, self._enqueue)
        except RuntimeError:
            return None  # not capturable (e.g. data-dependent shapes): plain enqueue from now on

    def close(self) -> None:
        for graph in self._graphs.values():
            if graph is not None:
                graph.destroy()
        self._graphs.clear()
        self.context = self.engine = None
        for buffer in self.buffers.values():
            buffer.free()
        self.stream.destroy()


class TensorRTBackend:
    name = "tensorrt"
    memory_kind = "GPU memory"

    def __init__(self, flavor: str | None = None, cuda_graphs: bool = True):
        if not cuda_driver.gpu_available():
            raise UserError("the tensorrt backend needs an NVIDIA GPU and driver; use --backend onnxruntime here")
        self.flavor = import_tensorrt(flavor)
        self.device = cuda_driver.Device(0)
        self.cuda_graphs = cuda_graphs

    def load_component(self, manifest, name: str, low_memory: bool = False) -> TrtSession:
        # low_memory: engines preallocate their buffers; nothing to trade here.
        record = manifest.engines.get("components", {}).get(name)
        if record is None:
            raise UserError(
                f"export '{manifest.root}' has no TensorRT engines; rebuild it with `sana-edge export ... --backend tensorrt`"
            )
        return TrtSession(self.flavor, self.device, manifest.root / record["file"], record, name, self.cuda_graphs)

    # -- what the memory planner asks (sana_edge.planner) --------------------------------------

    def stage_bytes(self, manifest) -> dict:
        return {name: int(entry["bytes"]) for name, entry in manifest.engines["components"].items()}

    def memory_in_use(self) -> int:
        free, total = self.device.memory()
        return total - free

    def memory_budget(self) -> int:
        return self.device.memory()[1]

    def max_decoder_tile(self, manifest) -> int | None:
        return engine_size_range(manifest)["decoder_tile"] // int(manifest.model["vae_scale_factor"])

    def check_size(self, manifest, height: int, width: int) -> None:
        check_engine_size(manifest, height, width)

    def describe(self) -> str:
        return f"{self.flavor.name} {self.flavor.version} on {self.device.name} (sm_{self.device.compute_capability})"
