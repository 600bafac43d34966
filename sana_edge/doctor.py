"""`sana-edge doctor`: versions, and what this machine can run."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform


def _version(package: str) -> str:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # missing, or present but broken (e.g. no GPU driver)
        return False


def report() -> str:
    from . import __version__

    lines = [f"sana-edge {__version__} on Python {platform.python_version()} ({platform.machine()})", "runtime:"]
    for package in ("numpy", "onnxruntime", "onnxruntime-gpu", "tokenizers", "pillow"):
        lines.append(f"  {package:<16} {_version(package)}")
    try:
        import onnxruntime as ort

        lines.append(f"  onnxruntime providers: {', '.join(ort.get_available_providers())}")
    except ImportError:
        lines.append("  onnxruntime providers: none (install onnxruntime)")
    lines.append("TensorRT:")
    lines.append(f"  tensorrt         {'importable' if _importable('tensorrt') else 'not available'}")
    lines.append(f"  tensorrt_rtx     {'importable' if _importable('tensorrt_rtx') or _importable('tensorrt_rtx_bindings') else 'not available'}")
    lines.append("build side (pip install 'sana-edge[export]'):")
    for package in ("torch", "diffusers", "transformers", "onnx"):
        lines.append(f"  {package:<16} {_version(package)}")
    return "\n".join(lines)
