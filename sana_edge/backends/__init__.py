"""Execution backends behind one feed-dict contract (see base.py)."""

from __future__ import annotations

from ..errors import UserError

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def tensorrt_usable(manifest) -> bool:
    """True when the export has engines, a TensorRT is installed and a GPU is present."""
    from .cuda_driver import gpu_available
    from .trt_flavor import installed_flavors

    return bool(manifest is not None and manifest.engines) and bool(installed_flavors()) and gpu_available()


def get_backend(name: str = "onnxruntime", manifest=None, **options):
    """`auto` picks TensorRT when the export has engines and this machine can run them."""
    if name == "auto":
        name = "tensorrt" if tensorrt_usable(manifest) else "onnxruntime"
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(**options)
    raise UserError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
