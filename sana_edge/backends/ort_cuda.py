"""ONNX Runtime on the CUDA execution provider: device memory planning and IO binding.

What differs from the CPU backend:
- Memory: the planner budgets device memory (NVML: `used`, `total`), not host RSS. A stage's
  peak is sampled from the driver, so the CUDA context, ORT's BFC arena and cuDNN workspaces
  count, as a user's `nvidia-smi` shows them.
- IO binding (`BoundSteps`): the caption's cross-attention K/V (the split graphs) or its
  embeddings (one graph) go to the device once per generation and stay there for every step;
  the caption_kv graph writes its K/V straight into device memory the step graph reads. Per step
  only the latents (CFG batch) and the timestep go up (128 KiB at 1024 px) and the velocity comes
  back. CFG and the solver update stay on the host: a few elementwise ops on 32x32x32 floats,
  which `benchmarks.gpu_suite` times per step (`host_update_s`) against the step itself.
- `cuda_graph=True` turns on ORT's CUDA graphs for the step session (`enable_cuda_graph`): ORT
  captures the first run and replays it, which requires every input and output at a fixed
  device address, so BoundSteps preallocates them and updates them in place.
- low_memory (the planner tiles the decode): the CUDA arena grows by what is requested instead of
  doubling (`arena_extend_strategy=kSameAsRequested`).

`device="cpu"` runs the same binding code on the CPU execution provider with ORT's CPU OrtValues:
the benchmark's dry run and the tests use it; there the memory is host RSS.
"""

from __future__ import annotations

import numpy as np

from ..components import TRANSFORMER, TRANSFORMER_STEP
from ..errors import UserError
from .onnxruntime_backend import HostMemoryPlanning, OnnxRuntimeBackend, OrtSession, check_graph_io

CUDA_PROVIDER = "CUDAExecutionProvider"
STEP_GRAPHS = (TRANSFORMER.name, TRANSFORMER_STEP.name)


class DeviceMemory:
    """Used and total memory of one GPU as the driver reports it: pynvml when installed, else
    libnvidia-ml through ctypes (sana_edge.backends.nvml). `reader` () -> (used, free, total)."""

    def __init__(self, index: int = 0, reader=None):
        self.index = index
        self._read = reader or _nvml_reader(index)

    @property
    def present(self) -> bool:
        return self._read() is not None

    def used(self) -> int:
        return int(self._read()[0])

    def total(self) -> int:
        return int(self._read()[2])


def _nvml_reader(index: int):
    try:
        import pynvml  # optional: nvidia-ml-py

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)

        def read():
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            return info.used, info.free, info.total

        return read
    except Exception:  # not installed, or no driver: the ctypes reader answers None without one
        from . import nvml

        return lambda: nvml.device_memory(index)


def cuda_available(providers: list[str] | None = None, memory: DeviceMemory | None = None) -> bool:
    """onnxruntime-gpu's CUDA provider is importable and the driver sees a GPU."""
    if providers is None:
        from .onnxruntime_backend import available_providers

        providers = available_providers()
    return CUDA_PROVIDER in providers and (memory or DeviceMemory()).present


class OrtCudaSession(OrtSession):
    """An ORT session that can also run the denoising steps with IO binding (bound_steps)."""

    def __init__(self, path, providers, device: str, device_id: int, **kwargs):
        import onnxruntime

        super().__init__(path, providers, **kwargs)
        self.device, self.device_id, self.ort = device, device_id, onnxruntime

    def bound_steps(self, caption_kv=None) -> "BoundSteps":
        """The step session with IO binding; `caption_kv`: the split export's K/V session."""
        return BoundSteps(self.ort, self._session, self.device, self.device_id,
                          None if caption_kv is None else caption_kv._session)


class BoundSteps:
    """The step graph run through IO binding with caption tensors resident on the device.

    `set_caption(embeds, mask)` once per generation, then `run(latents, timestep)` per step ->
    the step's output on the host. `ort` is the onnxruntime module (a fake one in tests)."""

    def __init__(self, ort, session, device: str, device_id: int, caption_kv_session=None):
        self.ort, self.session, self.device, self.device_id = ort, session, device, device_id
        self.caption_kv = caption_kv_session
        self.output_name = session.get_outputs()[0].name
        self._binding = None
        self._inputs: dict = {}  # name -> OrtValue kept on the device (fixed addresses for CUDA graphs)

    def _to_device(self, array: np.ndarray):
        return self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.device_id)

    def set_caption(self, embeds: np.ndarray, mask: np.ndarray) -> None:
        """Put the caption on the device: K/V computed there by caption_kv (split graphs), or
        the embeddings uploaded (one graph). Rebinds everything: a new generation."""
        self._binding = self.session.io_binding()
        self._inputs = {"encoder_attention_mask": self._to_device(mask.astype(np.int64))}
        if self.caption_kv is None:
            self._inputs["encoder_hidden_states"] = self._to_device(embeds)
        else:
            kv_binding = self.caption_kv.io_binding()
            kv_binding.bind_ortvalue_input("encoder_hidden_states", self._to_device(embeds))
            names = [o.name for o in self.caption_kv.get_outputs()]
            for name in names:  # ORT allocates them on the device; they never come to the host
                kv_binding.bind_output(name, self.device, self.device_id)
            self.caption_kv.run_with_iobinding(kv_binding)
            self._inputs.update(zip(names, kv_binding.get_outputs()))
        for name, value in self._inputs.items():
            self._binding.bind_ortvalue_input(name, value)

    def run(self, latents: np.ndarray, timestep: np.ndarray) -> np.ndarray:
        if self._binding is None:
            raise RuntimeError("set_caption() must come before run()")
        latents = np.ascontiguousarray(latents, np.float32)
        timestep = np.ascontiguousarray(timestep, np.float32)
        if "latents" not in self._inputs or tuple(self._inputs["latents"].shape()) != latents.shape:
            # First step (or a new size): allocate once, bind; later steps update in place.
            self._inputs["latents"], self._inputs["timestep"] = self._to_device(latents), self._to_device(timestep)
            for name in ("latents", "timestep"):
                self._binding.bind_ortvalue_input(name, self._inputs[name])
            self._output = self.ort.OrtValue.ortvalue_from_shape_and_type(
                self._output_shape(latents.shape), np.float32, self.device, self.device_id)
            self._binding.bind_ortvalue_output(self.output_name, self._output)
        else:
            self._inputs["latents"].update_inplace(latents)
            self._inputs["timestep"].update_inplace(timestep)
        self.session.run_with_iobinding(self._binding)
        return self._output.numpy()

    def _output_shape(self, latent_shape) -> list:
        declared = self.session.get_outputs()[0].shape  # (batch, out_channels, h, w); channels fixed
        channels = declared[1] if isinstance(declared[1], int) else latent_shape[1]
        return [latent_shape[0], channels, latent_shape[2], latent_shape[3]]


class DeviceMemoryPlanning:
    """The planner's answers on a GPU: stage sizes from the manifest (the weights ORT uploads),
    device memory in use and the device's total, from the driver."""

    def __init__(self, memory: DeviceMemory):
        self.device_memory = memory

    def stage_bytes(self, manifest) -> dict:
        return {name: int(entry["bytes"]) for name, entry in manifest.components.items()}

    def memory_in_use(self) -> int:
        return self.device_memory.used()

    def memory_budget(self) -> int:
        return self.device_memory.total()

    def max_decoder_tile(self, manifest) -> int | None:
        return None

    def check_size(self, manifest, height: int, width: int) -> None:
        return None


class OrtCudaBackend(OnnxRuntimeBackend):
    """`--backend ort-cuda`: fp32/fp16/int8/int4 graphs on ONNX Runtime's CUDA provider."""

    name = "ort-cuda"

    def __init__(self, device_id: int = 0, cuda_graph: bool = False, device: str = "cuda",
                 memory: DeviceMemory | None = None, threads: int | None = None):
        if device not in ("cuda", "cpu"):
            raise UserError(f"ort-cuda device must be 'cuda' or 'cpu' (got {device!r})")
        self.device, self.device_id, self.cuda_graph = device, device_id, cuda_graph
        if device == "cuda":
            from .onnxruntime_backend import available_providers

            if CUDA_PROVIDER not in available_providers():
                raise UserError("--backend ort-cuda needs onnxruntime-gpu (this onnxruntime has no CUDA provider): "
                                "pip uninstall onnxruntime && pip install onnxruntime-gpu")
            self.planning = DeviceMemoryPlanning(memory or DeviceMemory(device_id))
            self.memory_kind = "GPU memory"
        else:
            self.planning = HostMemoryPlanning()
            self.memory_kind = "RSS"
        super().__init__(providers=[CUDA_PROVIDER, "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"],
                         threads=threads)

    def provider_list(self, component: str, low_memory: bool) -> list:
        """Providers with the CUDA options for this component's session."""
        if self.device != "cuda":
            return list(self.providers)
        options = {"device_id": str(self.device_id),
                   "arena_extend_strategy": "kSameAsRequested" if low_memory else "kNextPowerOfTwo"}
        if self.cuda_graph and component in STEP_GRAPHS:
            options["enable_cuda_graph"] = "1"
        return [(CUDA_PROVIDER, options), "CPUExecutionProvider"]

    def load_component(self, manifest, name: str, low_memory: bool = False) -> OrtCudaSession:
        path = manifest.component_path(name)
        # The optimized-graph cache is keyed for CPU layouts; CUDA sessions optimize afresh.
        session = OrtCudaSession(path, self.provider_list(name, low_memory), self.device, self.device_id,
                                 threads=self.threads, memory_arena=not low_memory)
        check_graph_io(manifest, name, session, path)
        return session

    # The planner's questions go to device memory on a GPU, host memory on the CPU stand-in.
    def stage_bytes(self, manifest):
        return self.planning.stage_bytes(manifest)

    def memory_in_use(self) -> int:
        return self.planning.memory_in_use()

    def memory_budget(self) -> int:
        return self.planning.memory_budget()

    def describe(self) -> str:
        graphs = ", CUDA graphs for the step" if self.cuda_graph else ""
        return super().describe() + f" device {self.device}:{self.device_id}, IO binding{graphs}"

