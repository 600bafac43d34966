"""Execution backends behind one feed-dict contract (see base.py)."""

from __future__ import annotations

from ..errors import UserError

BACKENDS = ("onnxruntime",)


def get_backend(name: str = "onnxruntime", **options):
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    raise UserError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
