"""A minimal CUDA buffer layer over the driver API (libcuda, shipped with every NVIDIA driver),
through ctypes: device memory, async copies, a stream, and CUDA graph capture. It keeps the
TensorRT backend free of torch, cupy and cuda-python. TensorRT uses the runtime API, which
works in the device's primary context; this layer makes that same context current.

A CUDA context is current per thread: every entry point that may run on another thread than
the one that created the Device (the peak-memory sampler, a server's worker) makes it current
first (`Device.make_current`), or the driver answers CUDA_ERROR_INVALID_CONTEXT.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from ..errors import UserError

_lib = None
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CU_STREAM_NON_BLOCKING = 1
CU_STREAM_CAPTURE_MODE_RELAXED = 2


def _driver():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("cuda") or "libcuda.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise UserError("no NVIDIA driver found (libcuda); use the onnxruntime backend on this machine") from None
        _check(lib.cuInit(0), "cuInit", lib)  # a driver that cannot initialise is not kept
        _lib = lib
    return _lib


def _check(code: int, what: str, lib=None) -> None:
    if code != 0:
        text = ctypes.c_char_p()
        lib = lib or _lib
        if lib is not None:
            lib.cuGetErrorString(code, ctypes.byref(text))
        raise RuntimeError(f"CUDA {what} failed: error {code} {text.value.decode() if text.value else ''}".strip())


def gpu_available() -> bool:
    try:
        lib = _driver()
    except (UserError, RuntimeError):
        return False
    count = ctypes.c_int()
    return lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def driver_version() -> tuple[int, int] | None:
    """The newest CUDA version the installed driver supports, e.g. (12, 4); None without a driver."""
    try:
        lib = _driver()
    except (UserError, RuntimeError):
        return None
    version = ctypes.c_int()
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value // 1000, (version.value % 1000) // 10


class Device:
    """The primary context of one GPU, made current on this thread."""

    def __init__(self, ordinal: int = 0):
        lib = _driver()
        self.handle = ctypes.c_int()
        _check(lib.cuDeviceGet(ctypes.byref(self.handle), ordinal), "cuDeviceGet")
        self.context = ctypes.c_void_p()
        _check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), self.handle), "cuDevicePrimaryCtxRetain")
        self.make_current()

    def make_current(self) -> None:
        """Make this device's context current on the calling thread (a cheap driver call)."""
        _check(_driver().cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    @property
    def compute_capability(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib = _driver()
        _check(lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.handle),
               "cuDeviceGetAttribute")
        _check(lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.handle),
               "cuDeviceGetAttribute")
        return f"{major.value}.{minor.value}"

    @property
    def name(self) -> str:
        buffer = ctypes.create_string_buffer(256)
        _check(_driver().cuDeviceGetName(buffer, 256, self.handle), "cuDeviceGetName")
        return buffer.value.decode()

    def memory(self) -> tuple[int, int]:
        """(free, total) bytes of device memory; callable from any thread."""
        self.make_current()
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        _check(_driver().cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
        return free.value, total.value


class DeviceBuffer:
    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        self.ptr = ctypes.c_uint64()
        _check(_driver().cuMemAlloc_v2(ctypes.byref(self.ptr), ctypes.c_size_t(self.nbytes)), f"cuMemAlloc({self.nbytes})")

    def upload(self, array: np.ndarray, stream: "Stream") -> None:
        array = np.ascontiguousarray(array)
        if array.nbytes > self.nbytes:
            raise ValueError(f"{array.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        _check(_driver().cuMemcpyHtoDAsync_v2(self.ptr, array.ctypes.data_as(ctypes.c_void_p),
                                              ctypes.c_size_t(array.nbytes), stream.handle), "cuMemcpyHtoDAsync")

    def download(self, out: np.ndarray, stream: "Stream") -> None:
        _check(_driver().cuMemcpyDtoHAsync_v2(out.ctypes.data_as(ctypes.c_void_p), self.ptr,
                                              ctypes.c_size_t(out.nbytes), stream.handle), "cuMemcpyDtoHAsync")

    def free(self) -> None:
        if self.ptr.value:
            _driver().cuMemFree_v2(self.ptr)
            self.ptr = ctypes.c_uint64()


class Stream:
    def __init__(self):
        self.handle = ctypes.c_void_p()
        _check(_driver().cuStreamCreate(ctypes.byref(self.handle), CU_STREAM_NON_BLOCKING), "cuStreamCreate")

    def synchronize(self) -> None:
        _check(_driver().cuStreamSynchronize(self.handle), "cuStreamSynchronize")

    def destroy(self) -> None:
        if self.handle.value:
            _driver().cuStreamDestroy_v2(self.handle)
            self.handle = ctypes.c_void_p()


class CudaGraph:
    """Capture the work a callable enqueues on `stream` once; replay it with one launch."""

    def __init__(self, stream: Stream, enqueue):
        lib = _driver()
        _check(lib.cuStreamBeginCapture_v2(stream.handle, CU_STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture")
        try:
            enqueue()
        finally:
            graph = ctypes.c_void_p()
            _check(lib.cuStreamEndCapture(stream.handle, ctypes.byref(graph)), "cuStreamEndCapture")
        self.graph = graph
        self.exec = ctypes.c_void_p()
        _check(lib.cuGraphInstantiateWithFlags(ctypes.byref(self.exec), graph, ctypes.c_ulonglong(0)), "cuGraphInstantiate")
        self.stream = stream

    def launch(self) -> None:
        _check(_driver().cuGraphLaunch(self.exec, self.stream.handle), "cuGraphLaunch")

    def destroy(self) -> None:
        lib = _driver()
        if self.exec.value:
            lib.cuGraphExecDestroy(self.exec)
        if self.graph.value:
            lib.cuGraphDestroy(self.graph)
        self.exec = self.graph = ctypes.c_void_p()
