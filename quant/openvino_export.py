"""`sana-edge export --target openvino`: the staged, validated fp32 (or fp16) ONNX export turned
into OpenVINO IR in place, quantized by NNCF for int8 / int4 (sana_edge.quant.nncf_openvino).

The IR replaces the ONNX graphs (a folder holds one graph per component, which the manifest
hashes); `sana-edge run` picks the OpenVINO backend for it (`graph_format: openvino`). Every IR
is validated against the same fp32 PyTorch outputs as any export, run by OpenVINO on the CPU,
and must keep the linear-attention eps (a graph without it decodes wrong but finite values on
OpenVINO, where ONNX Runtime gives NaN: FIELD_NOTES.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sana_edge.components import COMPONENTS
from sana_edge.errors import UserError
from sana_edge.manifest import sha256_file

from .nncf_openvino import config_record, onnx_to_ir, openvino_recipe

GRAPH_FORMAT = "openvino"
LINEAR_ATTENTION_EPS = 1e-15


def count_eps_ir(xml_path: Path) -> int:
    """Scalar constants equal to the linear-attention eps in an OpenVINO IR."""
    import openvino as ov

    found = 0
    for op in ov.Core().read_model(str(xml_path)).get_ops():
        if op.get_type_name() == "Constant" and int(np.prod(op.get_output_shape(0))) == 1:
            value = op.get_data().reshape(-1)
            if value.dtype.kind == "f" and np.isclose(float(value[0]), LINEAR_ATTENTION_EPS, rtol=1e-3, atol=0):
                found += 1
    return found


def _ir_entry(xml: Path, report: list[dict], linear_attention: bool, model) -> dict:
    """The component's manifest entry for its IR: the declared io, the .xml and its .bin hashed."""
    from sana_edge.manifest import component_record

    weights = xml.with_suffix(".bin")
    extra = {}
    if linear_attention:
        extra["linear_attention_eps_constants"] = count_eps_ir(xml)
        if extra["linear_attention_eps_constants"] == 0:
            raise UserError(f"the OpenVINO IR of {xml.stem} lost the linear-attention eps (1e-15); export aborted; "
                            "report this with the checkpoint config")
    entry = component_record(xml, report, extra, model)
    entry["external_data"] = {weights.name: sha256_file(weights)}
    entry["bytes"] += weights.stat().st_size
    return entry


def export_openvino(manifest, job, log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Convert (int8/int4: quantize with NNCF) every staged fp32 ONNX graph of `manifest` (an
    export being written) to IR, validate it with OpenVINO against the job's PyTorch references;
    returns (the quantization record, the manifest's component entries)."""
    from sana_edge.backends.openvino_backend import OpenVINOBackend
    from sana_edge.export.validate import held_out_references, validate_component

    from .apply import calibrate
    from .configs import needs_calibration

    logging.getLogger("nncf").setLevel(logging.WARNING)  # its per-step INFO lines drown the export's own
    precision = job.options.precision
    recipe = {n: c for n, c in (job.recipe or openvino_recipe(precision)).items() if n in manifest.components}
    feeds, held_out, calibration = calibrate(manifest, recipe, job.calibration, log) if needs_calibration(recipe) \
        else ({}, {}, None)
    backend = OpenVINOBackend(cache=False)
    results, components = {}, {}
    for name, config in recipe.items():
        spec = COMPONENTS[name].for_model(manifest.model)
        onnx_path, xml = manifest.component_path(name), manifest.root / f"{name}.xml"
        log(f"... {name}: {type(config).__name__} -> {xml.name}")
        try:
            results[name] = onnx_to_ir(onnx_path, xml, config, feeds.get(name))
        except UserError:
            raise
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"NNCF/OpenVINO failed on {name} ({type(exc).__name__}: {reason}); "
                            "try --keep-fp to exclude the failing layers or another precision") from exc
        for file in (onnx_path, onnx_path.with_name(onnx_path.name + ".data")):
            file.unlink(missing_ok=True)
        # calibrated graphs on held-out sampler trajectories against the fp32 graph (exporter.py)
        references, against = ((held_out_references(held_out[name]), "the fp32 graph") if name in held_out
                               else (job.references[name], "PyTorch"))
        log(f"... validate {precision} {name} with OpenVINO against {against}")
        session = backend.load(xml, component=name)
        report = validate_component(spec, xml, references, precision, session=session, reference=against)
        session.close()
        components[name] = _ir_entry(xml, report, spec.linear_attention, manifest.model)
    record = {"precision": precision, "target": "openvino", "calibration": calibration,
              "components": {name: {"config": config_record(recipe[name]), "result": results[name]} for name in recipe}}
    return record, components
