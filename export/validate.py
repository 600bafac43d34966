"""Run an exported graph with ONNX Runtime against the PyTorch module on the declared shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sana_edge.components import ComponentSpec, sample_inputs
from sana_edge.errors import UserError
from sana_edge.metrics import cosine


class ExportValidationError(UserError):
    """The exported graph disagrees with PyTorch (or gives non-finite values)."""


def reference_outputs(spec: ComponentSpec, module, dims: dict) -> list[tuple[dict, dict, dict]]:
    """(binding, feeds, expected outputs) from the fp32 PyTorch module for every validation shape.

    Taken before any precision change, so fp16 exports are judged against fp32 PyTorch."""
    import torch

    references = []
    for index, binding in enumerate(spec.validation_shapes):
        feeds = sample_inputs(spec, {**dims, **binding}, seed=index + 1)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(feeds[n]) for n in spec.input_names))
        outputs = expected if isinstance(expected, (tuple, list)) else (expected,)
        references.append((binding, feeds, {n: o.float().numpy() for n, o in zip(spec.output_names, outputs)}))
    return references


def validate_component(spec: ComponentSpec, path: Path, references: list, precision: str) -> list[dict]:
    """Run the graph on each reference; raise ExportValidationError outside tolerance."""
    from sana_edge.backends.onnxruntime_backend import OrtSession

    session = OrtSession(path, ["CPUExecutionProvider"])
    threshold = spec.min_cosine[precision]
    report = []
    for binding, feeds, expected in references:
        got = session.run(feeds)
        for name in spec.output_names:
            ref, out = expected[name], got[name].astype(np.float32)
            finite = bool(np.isfinite(out).all())
            entry = {
                "shape": binding, "output": name, "cosine": cosine(ref, out) if finite else float("nan"),
                "max_abs_diff": float(np.max(np.abs(ref - out))) if finite else float("inf"),
                "finite": finite,
            }
            report.append(entry)
            if not finite or not entry["cosine"] >= threshold:
                raise ExportValidationError(
                    f"{spec.name} ({precision}) disagrees with PyTorch at {binding}: cosine "
                    f"{entry['cosine']:.6f} (need >= {threshold}), finite={finite}; "
                    "the export was not written; report this with the checkpoint config"
                )
    session.close()
    return report
