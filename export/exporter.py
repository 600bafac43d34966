"""`sana-edge export`: checkpoint -> validated ONNX graphs + tokenizer + scheduler + manifest.

Everything is written into a staging folder next to OUT and renamed into place only when every
component has passed validation, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sana_edge import __version__
from sana_edge.components import COMPONENTS
from sana_edge.errors import UserError
from sana_edge.manifest import FORMAT_VERSION, MANIFEST_NAME, sha256_file, write_json_atomic

from .checkpoint import CHECKPOINT_CALIBRATION_PROMPTS, CHECKPOINT_QUANT_DEFAULTS, default_complex_human_instruction, load_sana_pipeline, resolve_checkpoint
from .onnx_export import OPSET, as_fp16, count_eps, export_component, model_dims, torch_module
from .source_configs import CONFIGS_DIR, write_source_configs
from .validate import reference_outputs, validate_component

PRECISIONS = ("fp32", "fp16", "int8", "int4")
QUANTIZED = ("int8", "int4")
# Components whose graphs hold SANA's linear attention (and so its 1e-15 eps).
LINEAR_ATTENTION_COMPONENTS = ("transformer", "vae_decoder")


@dataclass
class ExportOptions:
    checkpoint: str
    out_dir: Path
    precision: str = "fp32"
    force: bool = False
    components: tuple[str, ...] = tuple(COMPONENTS)
    quant: object = None  # sana_edge.quant.recipes.QuantOptions for int8/int4
    engines: object = None  # sana_edge.export.engine.EngineRange: also build TensorRT engines


def check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output '{out_dir}' is a file; choose a folder path for -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UserError(f"output folder '{out_dir}' is not empty; pass --force to replace it or choose another -o")


@contextlib.contextmanager
def staging_dir(out_dir: Path):
    """Yield a fresh sibling folder; on success it replaces `out_dir`, on failure it is removed."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old")
    if out_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    stage.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def tool_versions() -> dict:
    import importlib.metadata as md

    versions = {}
    for package in ("torch", "diffusers", "transformers", "onnx", "onnxruntime", "tokenizers"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    return versions


def model_values(pipe, dims: dict) -> dict:
    """Source config values the runtime needs, recorded in the manifest."""
    from diffusers import SanaPipeline

    return {
        **dims,
        "vae_scale_factor": int(2 ** (len(pipe.vae.config.decoder_block_out_channels) - 1)),
        "vae_scaling_factor": float(pipe.vae.config.scaling_factor),
        "sample_size": int(pipe.transformer.config.sample_size),
        "timestep_scale": float(getattr(pipe.transformer.config, "timestep_scale", 1.0)),
        "flow_shift": float(pipe.scheduler.config.flow_shift),
        "max_sequence_length": 300,
        # For the memory planner's activation estimates (sana_edge.planner).
        "decoder_block_out_channels": [int(c) for c in pipe.vae.config.decoder_block_out_channels],
        "transformer_inner_dim": int(pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim),
        "mlp_ratio": float(pipe.transformer.config.mlp_ratio),
        "complex_human_instruction": default_complex_human_instruction(SanaPipeline),
    }


def export_checkpoint(options: ExportOptions, log: Callable[[str], None] = print) -> Path:
    if options.precision not in PRECISIONS:
        raise UserError(f"unknown precision '{options.precision}'; choose one of {', '.join(PRECISIONS)}")
    out_dir = Path(options.out_dir)
    quant_options = None
    if options.precision in QUANTIZED:
        from sana_edge.quant.recipes import QuantOptions, check_target

        quant_options = options.quant or QuantOptions()
        quant_options.check()
        check_target(options.precision, quant_options.target)
        from sana_edge.quant.calibration import read_prompts

        read_prompts(quant_options.calib_prompts)  # fail on a bad prompt file before any work
    flavor = None
    if options.engines is not None:
        from sana_edge.backends.trt_flavor import import_tensorrt

        flavor = import_tensorrt()  # fail before any work when no TensorRT is installed
        options.engines.check(32)
        if quant_options and quant_options.target != "tensorrt":
            raise UserError("TensorRT engines need graphs quantized for TensorRT; pass --target tensorrt (or omit --target)")
    check_out_dir(out_dir, options.force)
    source = resolve_checkpoint(options.checkpoint)
    own_prompts = source / CHECKPOINT_CALIBRATION_PROMPTS
    if quant_options and quant_options.calib_prompts is None and own_prompts.is_file():
        # A checkpoint may carry prompts of its own domain (the shipped shapes model does): its
        # activations on those, not on generic prompts, are what the int8 scales must cover.
        quant_options = dataclasses.replace(quant_options, calib_prompts=own_prompts)
        log(f"calibration prompts: {own_prompts} (shipped with the checkpoint)")
    defaults_file = source / CHECKPOINT_QUANT_DEFAULTS
    if quant_options and defaults_file.is_file():
        asked = json.loads(defaults_file.read_text()).get(options.precision, {})
        if quant_options.text_encoder_bits is None and asked.get("text_encoder_bits"):
            quant_options = dataclasses.replace(quant_options, text_encoder_bits=int(asked["text_encoder_bits"]))
            quant_options.check()
            log(f"text encoder at {quant_options.text_encoder_bits} bits: the checkpoint asks for it "
                f"({defaults_file.name}); --text-encoder-bits overrides")

    def stage(label: str):
        return _timed_stage(label, log)

    with staging_dir(out_dir) as stage_dir:
        with stage(f"load checkpoint {source}"):
            pipe = load_sana_pipeline(source)
            dims = model_dims(pipe)
        components, all_references = {}, {}
        for name in options.components:
            spec = COMPONENTS[name]
            module = torch_module(spec, pipe)
            path = stage_dir / spec.file
            with stage(f"run {name} in PyTorch fp32 on {len(spec.validation_shapes)} validation shapes"):
                references = reference_outputs(spec, module, dims)
            with stage(f"export {name} -> {spec.file} ({options.precision})"):
                if options.precision == "fp16":
                    module = as_fp16(module)
                export_component(spec, module, dims, path)
                del module
            with stage(f"validate {name} with ONNX Runtime"):
                graph_precision = "fp32" if quant_options else options.precision
                report = validate_component(spec, path, references, graph_precision)
            components[name] = _component_entry(spec, path, report)
            all_references[name] = references
        with stage("write tokenizer, scheduler config and manifest"):
            pipe.tokenizer.save_pretrained(stage_dir / "tokenizer")
            pipe.scheduler.save_config(stage_dir / "scheduler")
            write_source_configs(stage_dir, pipe)  # for interop (sana-edge convert); the runtime never reads them
            files = {
                str(p.relative_to(stage_dir)): sha256_file(p)
                for folder in ("tokenizer", "scheduler", CONFIGS_DIR) for p in sorted((stage_dir / folder).rglob("*")) if p.is_file()
            }
            manifest = {
                "format_version": FORMAT_VERSION,
                "sana_edge_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "source": str(options.checkpoint),
                "precision": options.precision,
                "opset": OPSET,
                "tool_versions": tool_versions(),
                "model": model_values(pipe, dims),
                "tokenizer": "tokenizer/tokenizer.json",
                "scheduler_config": "scheduler/scheduler_config.json",
                "files": files,
                "components": components,
            }
            write_json_atomic(stage_dir / MANIFEST_NAME, manifest)
        if options.quant is not None and options.quant.target == "openvino":  # IR in place of the ONNX graphs
            from sana_edge.quant.openvino_export import export_openvino

            with stage(f"OpenVINO IR ({options.precision}{', NNCF' if quant_options else ''})"):
                manifest["quantization"] = export_openvino(stage_dir, manifest, options.precision, options.quant,
                                                           all_references, log)
            write_json_atomic(stage_dir / MANIFEST_NAME, manifest)
        elif quant_options:
            from sana_edge.quant.apply import quantize_export

            with stage(f"quantize to {options.precision} for target {quant_options.target}"):
                base = manifest["model"]["sample_size"] * manifest["model"]["vae_scale_factor"]
                manifest["quantization"] = quantize_export(stage_dir, options.precision, quant_options, base, log)
            for name in options.components:
                spec = COMPONENTS[name]
                with stage(f"validate {options.precision} {name} with ONNX Runtime"):
                    report = validate_component(spec, stage_dir / spec.file, all_references[name], options.precision)
                components[name] = _component_entry(spec, stage_dir / spec.file, report)
            write_json_atomic(stage_dir / MANIFEST_NAME, manifest)
        if flavor is not None:
            from sana_edge.prompt import PromptTokenizer

            from .engine import build_engines

            model = manifest["model"]
            tokenizer = PromptTokenizer(stage_dir / manifest["tokenizer"], model["complex_human_instruction"],
                                        model["max_sequence_length"])
            with stage(f"build TensorRT engines ({flavor.name} {flavor.version})"):
                manifest["engines"] = build_engines(stage_dir, manifest, options.engines, flavor,
                                                    tokenizer.text_encoder_length, log)
            write_json_atomic(stage_dir / MANIFEST_NAME, manifest)
    log(f"export written to {out_dir}")
    return out_dir


def _component_entry(spec, path: Path, report: list[dict]) -> dict:
    import onnx

    entry = {
        "file": spec.file,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "inputs": [{"name": t.name, "dtype": t.dtype, "axes": list(t.axes)} for t in spec.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "axes": list(t.axes)} for t in spec.outputs],
        "dynamic_axes": {k: {str(i): a for i, a in v.items()} for k, v in spec.dynamic_axes().items()},
        "validation": report,
    }
    data_file = path.with_name(path.name + ".data")
    if data_file.exists():
        entry["external_data"] = {data_file.name: sha256_file(data_file)}
        entry["bytes"] += data_file.stat().st_size
    if spec.name in LINEAR_ATTENTION_COMPONENTS:
        eps_count = count_eps(onnx.load(str(path), load_external_data=False))
        if eps_count == 0:
            raise UserError(f"{spec.name} graph lost the linear-attention eps (1e-15); export aborted")
        entry["linear_attention_eps_constants"] = int(eps_count)
    return entry


@contextlib.contextmanager
def _timed_stage(label: str, log: Callable[[str], None]):
    log(f"... {label}")
    start = time.perf_counter()
    yield
    log(f"    done in {time.perf_counter() - start:.1f}s")
