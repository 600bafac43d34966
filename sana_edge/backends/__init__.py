"""Execution backends behind one feed-dict contract (see base.py)."""

from __future__ import annotations

import warnings

from ..errors import UserError

BACKENDS = ("auto", "onnxruntime", "tensorrt")
TENSORRT_ONLY_OPTIONS = ("flavor", "graphs")


class BackendFallbackWarning(UserWarning):
    """`--backend auto` found engines it cannot run here and uses ONNX Runtime instead."""


def tensorrt_problem(manifest) -> str | None:
    """Why this machine cannot run the export's engines (no engines, no TensorRT, no GPU, an
    unsupported GPU, an old driver, ...), or None when it can."""
    from .trt_checks import tensorrt_problem as problem

    return problem(manifest)


def tensorrt_usable(manifest) -> bool:
    """True when the export has engines and this machine's TensorRT, GPU and driver can run them."""
    return tensorrt_problem(manifest) is None


def get_backend(name: str = "onnxruntime", manifest=None, **options):
    """`auto` picks TensorRT when the export has engines and this machine can run them, and
    otherwise ONNX Runtime, with a BackendFallbackWarning saying why when engines were there."""
    if name == "auto":
        problem = tensorrt_problem(manifest) if manifest is not None and manifest.engines else "no engines"
        if problem is None:
            name = "tensorrt"
        else:
            if manifest is not None and manifest.engines:
                warnings.warn(f"TensorRT engines not used, running on ONNX Runtime: {problem}", BackendFallbackWarning,
                              stacklevel=2)
            name = "onnxruntime"
            options = {k: v for k, v in options.items() if k not in TENSORRT_ONLY_OPTIONS}
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(manifest=manifest, **options)
    raise UserError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
