"""Device memory as the driver sees it, through NVML (libnvidia-ml, shipped with every NVIDIA
driver) and ctypes: no CUDA context is needed, so any thread or process can read it, and it
counts everything a process holds on the GPU (CUDA context, allocator reserve, workspaces),
which framework counters such as torch's `max_memory_allocated` leave out. The figure is for
the whole device: measure one process by its difference from a reading taken before it started.
"""

from __future__ import annotations

import ctypes

_lib = None
_LIBRARIES = ("libnvidia-ml.so.1", "nvml.dll")


class _Memory(ctypes.Structure):  # nvmlMemory_t
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvml():
    global _lib
    if _lib is None:
        for name in _LIBRARIES:
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            if lib.nvmlInit_v2() == 0:
                _lib = lib
                break
    return _lib


def device_memory(index: int = 0) -> tuple[int, int, int] | None:
    """(used, free, total) bytes of GPU `index`, or None without an NVIDIA driver."""
    lib = _nvml()
    if lib is None:
        return None
    handle = ctypes.c_void_p()
    if lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
        return None
    memory = _Memory()
    if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
        return None
    return memory.used, memory.free, memory.total
