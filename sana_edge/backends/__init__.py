"""Execution backends behind one feed-dict contract (see base.py)."""

from __future__ import annotations

from ..errors import UserError

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


def tensorrt_usable(manifest) -> bool:
    """True when the export has engines, a TensorRT is installed and a GPU is present."""
    from .cuda_driver import gpu_available
    from .trt_flavor import installed_flavors

    return bool(manifest is not None and manifest.engines) and bool(installed_flavors()) and gpu_available()


def resolve_backend(name: str, manifest=None) -> str:
    """`auto`: OpenVINO for an OpenVINO IR export, TensorRT when the export has engines and this
    machine can run them, ONNX Runtime otherwise. A backend that cannot read the export's graphs
    is refused here, with the backend that can."""
    openvino_ir = manifest is not None and manifest.graph_format == "openvino"
    if name == "auto":
        return "openvino" if openvino_ir else "tensorrt" if tensorrt_usable(manifest) else "onnxruntime"
    if openvino_ir and name != "openvino":
        raise UserError(f"export '{manifest.root}' holds OpenVINO IR (made with --target openvino), which {name} cannot "
                        "run; pass --backend openvino (pip install 'sana-edge[openvino]')")
    return name


def graph_backend(manifest) -> str:
    """The backend that runs the export's graphs as written, without engines: ONNX Runtime for
    ONNX, OpenVINO for IR (what `sana-edge eval` compares, whatever the machine has)."""
    return "openvino" if manifest.graph_format == "openvino" else "onnxruntime"


def get_backend(name: str = "onnxruntime", manifest=None, **options):
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    name = resolve_backend(name, manifest)
    device = options.pop("device", None)
    if device is not None and name != "openvino":
        raise UserError(f"--device chooses an OpenVINO device; add --backend openvino (this run uses {name})")
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    if name == "openvino":
        from .openvino_backend import OpenVINOBackend

        return OpenVINOBackend(device=device or "CPU", **options)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(**options)
