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

from .nncf_openvino import onnx_to_ir, openvino_recipe
from .recipes import QuantOptions

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


def _ir_entry(onnx_entry: dict, xml: Path, report: list[dict]) -> dict:
    """The component's manifest entry for its IR: the ONNX entry's io declaration, the IR's files."""
    weights = xml.with_suffix(".bin")
    entry = {k: v for k, v in onnx_entry.items() if k not in ("external_data", "validation")}
    entry.update(file=xml.name, sha256=sha256_file(xml), bytes=xml.stat().st_size + weights.stat().st_size,
                 external_data={weights.name: sha256_file(weights)}, validation=report)
    if "linear_attention_eps_constants" in onnx_entry:
        entry["linear_attention_eps_constants"] = count_eps_ir(xml)
        if entry["linear_attention_eps_constants"] == 0:
            raise UserError(f"the OpenVINO IR of {xml.stem} lost the linear-attention eps (1e-15); export aborted; "
                            "report this with the checkpoint config")
    return entry


def calibration_feeds(stage: Path, options: QuantOptions, base_size: int, log: Callable[[str], None] = print):
    """({"transformer": feeds}, calibration sha256): the transformer's inputs at every step of real
    Flow-DPM-Solver trajectories with CFG over the calibration prompts, run on the staged fp32
    graphs: the prompts, seeds, steps and resolution of the ORT int8 path. Each session the
    pipeline loads records into one list (stages are released between runs)."""
    from sana_edge.pipeline import SanaEdgePipeline

    from .apply import CALIB_MAX_RESOLUTION
    from .calibration import calibration_hash, read_prompts

    prompts = read_prompts(options.calib_prompts)[: options.calib_size]
    resolution = options.calib_resolution or max(32, min(base_size, CALIB_MAX_RESOLUTION) // 32 * 32)
    log(f"... calibrating on {len(prompts)} prompts x {options.calib_steps} steps at {resolution} px")
    pipe = SanaEdgePipeline.from_export(stage, verify=False)
    recorded: list[dict] = []
    load = pipe.backend.load_component
    pipe.backend.load_component = lambda manifest, name, low_memory=False: (
        _Recording(load(manifest, name, low_memory), recorded) if name == "transformer" else load(manifest, name, low_memory))
    for index, prompt in enumerate(prompts):
        pipe.generate(prompt, height=resolution, width=resolution, steps=options.calib_steps, seed=options.seed + index)
    return {"transformer": recorded}, calibration_hash(prompts, options.calib_steps, resolution, options.seed)


class _Recording:
    """A session that keeps a copy of every feed dict it runs."""

    def __init__(self, session, feeds: list):
        self.session, self.feeds = session, feeds
        self.input_names, self.output_names = session.input_names, session.output_names

    def run(self, feeds):
        self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.session.run(feeds)

    def close(self):
        self.session.close()


def export_openvino(stage: Path, manifest: dict, precision: str, options: QuantOptions, references: dict,
                    log: Callable[[str], None] = print) -> dict:
    """Convert (and for int8/int4 quantize) every component of the staged export to IR, validate
    it with OpenVINO, and update `manifest` in place; returns the quantization record."""
    from sana_edge.backends.openvino_backend import OpenVINOBackend
    from sana_edge.export.validate import validate_component

    logging.getLogger("nncf").setLevel(logging.WARNING)  # its per-step INFO lines drown the export's own
    recipe = openvino_recipe(precision, options.block_size, options.keep_fp, options.text_encoder_bits)
    feeds, digest = {}, None
    if any(config.needs_calibration for config in recipe.values()):
        base = manifest["model"]["sample_size"] * manifest["model"]["vae_scale_factor"]
        feeds, digest = calibration_feeds(stage, options, base, log)
    backend = OpenVINOBackend(cache=False)
    records = {}
    for name, config in recipe.items():
        spec, onnx_path, xml = COMPONENTS[name], stage / COMPONENTS[name].file, stage / f"{name}.xml"
        log(f"... {name}: {type(config).__name__} -> {xml.name}")
        try:
            records[name] = onnx_to_ir(onnx_path, xml, config, feeds.get(name))
        except UserError:
            raise
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"NNCF/OpenVINO failed on {name} ({type(exc).__name__}: {reason}); "
                            "try --keep-fp to exclude the failing layers or another precision") from exc
        for file in (onnx_path, onnx_path.with_name(onnx_path.name + ".data")):
            file.unlink(missing_ok=True)
        log(f"... validate {precision} {name} with OpenVINO")
        session = backend.load(xml, component=name)
        report = validate_component(spec, xml, references[name], precision, session=session)
        session.close()
        manifest["components"][name] = _ir_entry(manifest["components"][name], xml, report)
    manifest["graph_format"] = GRAPH_FORMAT
    return {"precision": precision, "target": "openvino", "block_size": options.block_size,
            "text_encoder_bits": 4 if options.text_encoder_bits == 4 else 8, "calibration_sha256": digest,
            "calib_prompts": str(options.calib_prompts) if options.calib_prompts else "shipped",
            "components": records}
