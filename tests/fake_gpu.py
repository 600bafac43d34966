"""Honest stand-ins for a GPU, for the TensorRT backend's tests on CPU-only CI.

FakeCuda answers the libcuda calls sana_edge.backends.cuda_driver makes through ctypes, with
the driver's rules that matter here: a context is current per thread (calls without one fail
with CUDA_ERROR_INVALID_CONTEXT), memory is real host bytes behind fake device pointers, work
on a stream runs in order, and work enqueued while the stream is captured is recorded, not run,
and replays, with the parameters it was captured with, on each graph launch.

make_fake_trt() is a TensorRT-RTX module for what the backend uses: logger, runtime (with the
header validity check), engines that compute y = 2x + 1 on their device buffers, runtime
configs, and a runtime cache of "compiled kernels".
"""

from __future__ import annotations

import ctypes
import json
import threading
import types

import numpy as np

CUDA_ERROR_INVALID_CONTEXT = 201
HEADER = 64


def _value(x):
    return getattr(x, "value", x) or 0


class FakeCuda:
    CONTEXT = 0xC0FFEE

    def __init__(self, name="NVIDIA GeForce RTX 4070 Laptop GPU", cc=(8, 9), driver=13000, total=8 << 30):
        self.name, self.cc, self.driver, self.total = name, cc, driver, total
        self._local = threading.local()
        self.memory: dict[int, bytearray] = {}
        self._next = 0x10000
        self.context_threads: set[int] = set()  # threads that made the context current
        self._captures: dict[int, list] = {}
        self._graphs: dict[int, list] = {}
        self.launches = 0

    # -- context and device ---------------------------------------------------------------
    def current(self):
        return getattr(self._local, "context", None)

    def cuInit(self, flags):
        return 0

    def cuDriverGetVersion(self, ref):
        ref._obj.value = self.driver
        return 0

    def cuDeviceGetCount(self, ref):
        ref._obj.value = 1
        return 0

    def cuDeviceGet(self, ref, ordinal):
        ref._obj.value = ordinal
        return 0

    def cuDevicePrimaryCtxRetain(self, ref, device):
        ref._obj.value = self.CONTEXT
        return 0

    def cuCtxSetCurrent(self, context):
        self._local.context = _value(context)
        self.context_threads.add(threading.get_ident())
        return 0

    def cuDeviceGetAttribute(self, ref, attribute, device):
        ref._obj.value = self.cc[0] if attribute == 75 else self.cc[1]
        return 0

    def cuDeviceGetName(self, buffer, size, device):
        buffer.value = self.name.encode()
        return 0

    def cuGetErrorString(self, code, ref):
        ref._obj.value = b"CUDA_ERROR_INVALID_CONTEXT" if code == CUDA_ERROR_INVALID_CONTEXT else b"CUDA_ERROR"
        return 0

    # -- memory -----------------------------------------------------------------------------
    def cuMemGetInfo_v2(self, free, total):
        if self.current() is None:
            return CUDA_ERROR_INVALID_CONTEXT
        total._obj.value = self.total
        free._obj.value = self.total - (300 << 20) - sum(len(b) for b in self.memory.values())  # context + allocations
        return 0

    def cuMemAlloc_v2(self, ref, size):
        if self.current() is None:
            return CUDA_ERROR_INVALID_CONTEXT
        ptr, self._next = self._next, self._next + _value(size) + 256
        self.memory[ptr] = bytearray(_value(size))
        ref._obj.value = ptr
        return 0

    def cuMemFree_v2(self, ptr):
        del self.memory[_value(ptr)]
        return 0

    def read(self, ptr: int, nbytes: int) -> bytes:
        return bytes(self.memory[ptr][:nbytes])

    def write(self, ptr: int, data: bytes) -> None:
        self.memory[ptr][: len(data)] = data

    def enqueue(self, stream, work) -> None:
        """Run `work` now, or record it when `stream` is being captured."""
        captured = self._captures.get(_value(stream))
        if captured is not None:
            captured.append(work)
        else:
            work()

    def cuMemcpyHtoDAsync_v2(self, dst, src, nbytes, stream):
        data = ctypes.string_at(_value(src), _value(nbytes))
        self.enqueue(stream, lambda: self.write(_value(dst), data))
        return 0

    def cuMemcpyDtoHAsync_v2(self, dst, src, nbytes, stream):
        address, n, ptr = _value(dst), _value(nbytes), _value(src)
        self.enqueue(stream, lambda: ctypes.memmove(address, self.read(ptr, n), n))
        return 0

    # -- streams and graphs -----------------------------------------------------------------
    def cuStreamCreate(self, ref, flags):
        ref._obj.value, self._next = self._next, self._next + 1
        return 0

    def cuStreamSynchronize(self, stream):
        return 0

    def cuStreamDestroy_v2(self, stream):
        return 0

    def cuStreamBeginCapture_v2(self, stream, mode):
        self._captures[_value(stream)] = []
        return 0

    def cuStreamEndCapture(self, stream, ref):
        ref._obj.value, self._next = self._next, self._next + 1
        self._graphs[ref._obj.value] = self._captures.pop(_value(stream))
        return 0

    def cuGraphInstantiateWithFlags(self, ref, graph, flags):
        ref._obj.value = _value(graph)  # the executable replays the same recorded work
        return 0

    def cuGraphLaunch(self, graph_exec, stream):
        self.launches += 1
        for work in self._graphs[_value(graph_exec)]:
            work()
        return 0

    def cuGraphExecDestroy(self, graph_exec):
        return 0

    def cuGraphDestroy(self, graph):
        self._graphs.pop(_value(graph), None)
        return 0


def fake_engine_bytes(device_memory: int = 1 << 20, capturable: bool = True) -> bytes:
    """A fake serialized engine: header, then what the fake runtime needs to rebuild it."""
    body = json.dumps({"device_memory": device_memory, "capturable": capturable}).encode()
    return b"FAKE-ENGINE".ljust(HEADER, b"\0") + body


def make_fake_trt(cuda: FakeCuda, version: str = "1.7.1.116", validity: tuple[str, int] = ("VALID", 0)):
    """A TensorRT-RTX-like module bound to `cuda`; `trt.log` records what happened."""
    trt = types.ModuleType("fake_tensorrt_rtx")
    trt.__version__ = version
    trt.log = {"loggers": 0, "runtimes": 0, "deserialized": 0, "compiled": 0, "contexts": []}
    trt.validity = validity
    trt.EngineValidity = types.SimpleNamespace(VALID="VALID", SUBOPTIMAL="SUBOPTIMAL", INVALID="INVALID")
    trt.EngineInvalidityDiagnostics = types.SimpleNamespace(
        VERSION_MISMATCH=1, UNSUPPORTED_CC=2, OLD_CUDA_DRIVER=4, OLD_CUDA_RUNTIME=8, INSUFFICIENT_GPU_MEMORY=16,
        MALFORMED_ENGINE=32, CUDA_ERROR=64)
    trt.ComputeCapability = types.SimpleNamespace(NONE=0, CURRENT=1, SM75=75, SM80=80, SM86=86, SM89=89, SM120=120, SM121=121)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.CudaGraphStrategy = types.SimpleNamespace(DISABLED="DISABLED", WHOLE_GRAPH_CAPTURE="WHOLE_GRAPH_CAPTURE")
    trt.DynamicShapesKernelSpecializationStrategy = types.SimpleNamespace(LAZY="LAZY", EAGER="EAGER", NONE="NONE")
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(STATIC="STATIC", ON_PROFILE_CHANGE="ON_PROFILE_CHANGE",
                                                                   USER_MANAGED="USER_MANAGED")
    trt.nptype = lambda dtype: np.dtype(dtype).type  # as the real one: a numpy scalar type

    class Logger:
        WARNING, ERROR = "WARNING", "ERROR"

        def __init__(self, severity):
            trt.log["loggers"] += 1

    class RuntimeCache:
        def __init__(self):
            self._kernels: set[str] = set()

        def serialize(self) -> bytes:
            return json.dumps(sorted(self._kernels)).encode()

        def deserialize(self, blob) -> bool:
            if cuda.current() is None:  # TensorRT needs a current context to compare environments
                return False
            self._kernels = set(json.loads(bytes(blob)))
            return True

    class RuntimeConfig:
        def __init__(self):
            self.cuda_graph_strategy = "DISABLED"
            self.dynamic_shapes_kernel_specialization_strategy = "LAZY"
            self._allocation, self._cache = "STATIC", None

        def set_execution_context_allocation_strategy(self, strategy):
            self._allocation = strategy

        def create_runtime_cache(self):
            return RuntimeCache()

        def set_runtime_cache(self, cache):
            self._cache = cache
            return True

    class Engine:
        def __init__(self, spec: dict):
            self.device_memory_size_v2 = spec["device_memory"]
            self._capturable = spec["capturable"]
            self.num_io_tensors = 2

        def get_tensor_name(self, index):
            return ("x", "y")[index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "x" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return "float32"

        def create_runtime_config(self):
            return RuntimeConfig()

        def create_execution_context(self, config):
            if config._cache is not None and "y=2x+1" not in config._cache._kernels:
                trt.log["compiled"] += 1  # just-in-time compilation, skipped when the cache has it
                config._cache._kernels.add("y=2x+1")
            context = Context(self, config)
            trt.log["contexts"].append(context)
            return context

    class Context:
        def __init__(self, engine, config):
            self.engine, self._config = engine, config
            self._shapes, self._addresses, self.device_memory = {}, {}, None

        def set_device_memory(self, ptr, size):
            assert size >= self.engine.device_memory_size_v2 and ptr in cuda.memory
            self.device_memory = ptr

        def set_input_shape(self, name, shape):
            self._shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self._shapes["x"]

        def set_tensor_address(self, name, ptr):
            self._addresses[name] = ptr
            return True

        def is_stream_capturable(self, stream):
            return self.engine._capturable

        def execute_async_v3(self, stream):
            if self._config._allocation == "USER_MANAGED" and self.device_memory is None:
                return False
            shape, src, dst = self._shapes["x"], self._addresses["x"], self._addresses["y"]  # fixed at enqueue

            def kernel():
                n = int(np.prod(shape)) * 4
                x = np.frombuffer(cuda.read(src, n), np.float32)
                cuda.write(dst, (2 * x + 1).astype(np.float32).tobytes())

            cuda.enqueue(stream, kernel)
            return True

    class Runtime:
        engine_header_size = HEADER

        def __init__(self, logger):
            trt.log["runtimes"] += 1

        def get_engine_validity(self, header):
            assert len(header) == HEADER, "the header alone is enough"
            verdict, diagnostics = trt.validity
            return getattr(trt.EngineValidity, verdict), diagnostics

        def deserialize_cuda_engine(self, blob):
            trt.log["deserialized"] += 1
            blob = bytes(blob)
            if not blob.startswith(b"FAKE-ENGINE"):
                return None
            return Engine(json.loads(blob[HEADER:]))

    # The real module's names, so a test can hold the fake's surface against the real bindings.
    trt.Logger, trt.Runtime, trt.ICudaEngine, trt.IExecutionContext = Logger, Runtime, Engine, Context
    trt.IRuntimeConfig, trt.IRuntimeCache = RuntimeConfig, RuntimeCache
    return trt


def fake_export(root, flavor: str = "tensorrt_rtx", version: str = "1.7.1.116", builder_flags=("REQUIRE_USER_ALLOCATION",),
                device_memory: int = 1 << 20, capturable: bool = True, min_size: int = 1024, decoder_tile: int = 1024):
    """A Manifest whose three components are fake engines (profile: x from (1, 4) to (8, 4))."""
    import hashlib

    from sana_edge.manifest import Manifest, ModelValues

    (root / "engines").mkdir(parents=True, exist_ok=True)
    components = {}
    for name in ("text_encoder", "transformer", "vae_decoder"):
        blob = fake_engine_bytes(device_memory, capturable)
        (root / "engines" / f"{name}.engine").write_bytes(blob)
        components[name] = {
            "file": f"engines/{name}.engine", "sha256": hashlib.sha256(blob + name.encode()).hexdigest(),
            "bytes": len(blob), "profile": {"x": [[1, 4], [2, 4], [8, 4]]}, "flavor": flavor, "version": version,
            "compute_capability": "default", "builder_flags": list(builder_flags), "io_bytes": 2 * 8 * 4 * 4,
        }
    engines = {"flavor": flavor, "version": version, "components": components,
               "range": {"min_size": min_size, "opt_size": 1024, "max_size": 1024, "decoder_tile": decoder_tile}}
    model = ModelValues(latent_channels=32, out_channels=32, vae_scale_factor=32, vae_scaling_factor=0.41407,
                        sample_size=32, max_sequence_length=300, complex_human_instruction=(), timestep_scale=1.0)
    return Manifest(root, {"model": model.to_dict(), "engines": engines}, model)
