"""Execution backends behind one feed-dict contract (see base.py)."""

from __future__ import annotations

import warnings

from ..errors import UserError

BACKENDS = ("auto", "onnxruntime", "ort-cuda", "openvino", "tensorrt")
ORT_CUDA_ONLY_OPTIONS = ("cuda_graph", "device_id")
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


def graph_backend(manifest) -> str:
    """The backend that runs the export's graphs as written, without engines: ONNX Runtime for
    ONNX, OpenVINO for IR (what `sana-edge eval` compares, whatever the machine has)."""
    return "openvino" if manifest.graph_format == "openvino" else "onnxruntime"


def cuda_available() -> bool:
    """onnxruntime-gpu's CUDA provider and a GPU the driver sees (the ort-cuda backend can run)."""
    from .ort_cuda import cuda_available as available

    return available()


def _auto(manifest, options: dict) -> tuple[str, dict]:
    """OpenVINO for an OpenVINO IR export; TensorRT when the export has engines and this machine
    can run them; otherwise ONNX Runtime: on the GPU (ort-cuda) when onnxruntime-gpu and a GPU
    are here, else on the CPU, with a BackendFallbackWarning saying why when engines were there."""
    if manifest is not None and manifest.graph_format == "openvino":
        return "openvino", options
    problem = tensorrt_problem(manifest) if manifest is not None and manifest.engines else "no engines"
    if problem is None:
        return "tensorrt", options
    if manifest is not None and manifest.engines:
        warnings.warn(f"TensorRT engines not used, running on ONNX Runtime: {problem}", BackendFallbackWarning,
                      stacklevel=3)
    options = {k: v for k, v in options.items() if k not in TENSORRT_ONLY_OPTIONS}
    if cuda_available():
        return "ort-cuda", options
    return "onnxruntime", {k: v for k, v in options.items() if k not in ORT_CUDA_ONLY_OPTIONS}


def get_backend(name: str = "onnxruntime", manifest=None, **options):
    """The backend `name` for this export (`auto`: see _auto). A backend that cannot read the
    export's graphs (OpenVINO IR) is refused with the one that can."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    device = options.pop("device", None)
    if name == "auto":
        name, options = _auto(manifest, options)
    elif manifest is not None and manifest.graph_format == "openvino" and name != "openvino":
        raise UserError(f"export '{manifest.root}' holds OpenVINO IR (made with --target openvino), which {name} cannot "
                        "run; pass --backend openvino (pip install 'sana-edge[openvino]')")
    if name not in ("ort-cuda", "auto") and any(k in options for k in ORT_CUDA_ONLY_OPTIONS):
        raise UserError(f"--cuda-graph applies to the ort-cuda backend; pass --backend ort-cuda (this run uses {name})")
    if device is not None and name not in ("openvino", "ort-cuda"):
        raise UserError(f"--device chooses an OpenVINO device; add --backend openvino (this run uses {name})")
    if name == "ort-cuda":
        from .ort_cuda import OrtCudaBackend

        return OrtCudaBackend(**options, **({"device": device} if device else {}))
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    if name == "openvino":
        from .openvino_backend import OpenVINOBackend

        return OpenVINOBackend(device=device or "CPU", **options)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(manifest=manifest, **options)
