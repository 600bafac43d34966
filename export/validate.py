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


def held_out_references(pairs: list) -> list:
    """(feed, fp32 outputs) pairs of held-out calibration trajectories as validation references."""
    return [({"held_out_feed": index}, feed, outputs) for index, (feed, outputs) in enumerate(pairs)]


def compare_outputs(spec: ComponentSpec, path: Path, references: list, session=None,
                    reference: str = "PyTorch") -> list[dict]:
    """Run the graph on each (binding, feeds, expected outputs); one entry per (shape, output):
    cosine, max |diff|, finite, and `reference`, what produced the expected outputs.
    `session`: a loaded backend session (OpenVINO IR); default an ONNX Runtime CPU session."""
    from sana_edge.backends.onnxruntime_backend import OrtSession

    session = session or OrtSession(path, ["CPUExecutionProvider"])
    report = []
    for binding, feeds, expected in references:
        got = session.run(feeds)
        for name in spec.output_names:
            ref, out = expected[name], got[name].astype(np.float32)
            finite = bool(np.isfinite(out).all())
            report.append({
                "shape": binding, "output": name, "reference": reference,
                "cosine": cosine(ref, out) if finite else float("nan"),
                "max_abs_diff": float(np.max(np.abs(ref - out))) if finite else float("inf"),
                "finite": finite,
            })
    session.close()
    return report


def validate_component(spec: ComponentSpec, path: Path, references: list, precision: str, session=None,
                       reference: str = "PyTorch") -> list[dict]:
    """Run the graph on each reference; raise ExportValidationError outside tolerance."""
    threshold = spec.min_cosine[precision]
    report = compare_outputs(spec, path, references, session, reference)
    for entry in report:
        if not entry["finite"] or not entry["cosine"] >= threshold:
            raise ExportValidationError(
                f"{spec.name} ({precision}) disagrees with {reference} at {entry['shape']}: cosine "
                f"{entry['cosine']:.6f} (need >= {threshold}), finite={entry['finite']}; "
                "the export was not written; report this with the checkpoint config"
            )
    return report
