"""`sana-edge export`: checkpoint -> validated ONNX graphs + tokenizer + scheduler + manifest.

A short sequence of named steps (export_checkpoint). Every check that needs no model runs first
(export/prepare.py, which imports no torch, so the CLI runs it before loading torch); everything is written into a staging folder that replaces OUT only when complete
(export/staging.py); each final graph is validated against PyTorch and hashed once, and the
manifest is written once, at the end.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import time
from collections.abc import Callable
from pathlib import Path

from sana_edge import __version__
from sana_edge.components import COMPONENTS
from sana_edge.errors import UserError
from sana_edge.manifest import Manifest, ModelValues, component_record, folder_records, write_manifest

from .checkpoint import load_sana_pipeline, model_values
from .onnx_export import OPSET, as_fp16, count_eps, export_component
from .prepare import ExportJob, ExportOptions, prepare
from .prompt_cache import write_prompt_cache
from .source_configs import CONFIGS_DIR, write_source_configs
from .staging import staging_dir
from .validate import held_out_references, reference_outputs, validate_component
from .wrappers import torch_module

TOKENIZER_DIR, SCHEDULER_DIR = "tokenizer", "scheduler"


@contextlib.contextmanager
def _step(log: Callable[[str], None], label: str):
    log(f"... {label}")
    start = time.perf_counter()
    yield
    log(f"    done in {time.perf_counter() - start:.1f}s")


def write_support_files(stage: Path, pipe) -> dict[str, str]:
    """Tokenizer and scheduler config, as the runtime reads them; returns their hashes."""
    pipe.tokenizer.save_pretrained(stage / TOKENIZER_DIR)
    pipe.scheduler.save_config(stage / SCHEDULER_DIR)
    write_source_configs(stage, pipe)  # for interop (sana-edge convert); the runtime never reads them
    return folder_records(stage, (TOKENIZER_DIR, SCHEDULER_DIR, CONFIGS_DIR))


def export_graphs(stage: Path, pipe, model: ModelValues, job: ExportJob, log) -> None:
    """Each declared component: PyTorch reference outputs, ONNX export, validation with ORT.
    Quantized exports validate the fp32 graphs here too, so a broken export fails before calibration.
    Every reference is taken before any export: an fp16 export casts the pipeline's modules in
    place, and the VAE's decoder and encoder share one module."""
    precision = job.options.precision
    specs = {name: COMPONENTS[name].for_model(model) for name in job.components}
    for name, spec in specs.items():
        with _step(log, f"run {name} in PyTorch fp32 on {len(spec.validation_shapes)} validation shapes"):
            job.references[name] = reference_outputs(spec, torch_module(spec, pipe), model.dims())
    for name, spec in specs.items():
        module = torch_module(spec, pipe)
        with _step(log, f"export {name} -> {spec.file} ({precision})"):
            job.eps[name] = export_component(spec, as_fp16(module) if precision == "fp16" else module,
                                             model.dims(), stage / spec.file)
        del module
        _check_eps(spec, job.eps[name])
        if job.quantized:
            with _step(log, f"validate fp32 {name} with ONNX Runtime"):
                job.reports[name] = validate_component(spec, stage / spec.file, job.references[name], "fp32")


def _check_eps(spec, count: int) -> None:
    if spec.linear_attention and count == 0:
        raise UserError(f"{spec.name} graph lost the linear-attention eps (1e-15); export aborted; "
                        "report this with the checkpoint config")


def draft_manifest(stage: Path, model: ModelValues, files: dict, components: tuple) -> Manifest:
    """The staged fp32 graphs as an in-memory manifest: what the runtime pipeline runs for calibration."""
    draft = {"precision": "fp32", "tokenizer": f"{TOKENIZER_DIR}/tokenizer.json",
             "scheduler_config": f"{SCHEDULER_DIR}/scheduler_config.json", "files": files,
             "components": {n: {"file": COMPONENTS[n].file, "bytes": (stage / COMPONENTS[n].file).stat().st_size}
                            for n in components}}
    return Manifest(stage, draft, model)


def quantize_graphs(stage: Path, model: ModelValues, files: dict, job: ExportJob, log) -> dict:
    from sana_edge.quant.apply import quantize_export

    with _step(log, f"quantize to {job.options.precision} for target {job.target}"):
        record, job.held_out = quantize_export(draft_manifest(stage, model, files, job.components),
                                               job.options.precision, job.target, job.recipe, job.calibration, log,
                                               inspect=count_eps)
    for name, entry in record["components"].items():
        if "inspection" in entry:
            job.eps[name] = entry.pop("inspection")
            _check_eps(COMPONENTS[name], job.eps[name])
    return record


def record_components(stage: Path, model: ModelValues, job: ExportJob, log) -> dict:
    """Validate each final graph against PyTorch and hash it: once per graph."""
    precision = job.options.precision
    components = {}
    for name in job.components:
        spec = COMPONENTS[name].for_model(model)
        if name in job.reports and not job.recipe[name].changes_graph:
            report = job.reports[name]  # e.g. the decoder of an int8 export: its fp32 graph is final
        elif name in job.held_out:
            # Calibrated graphs are judged on the inputs they will see (held-out sampler
            # trajectories) against the fp32 graph validated above: random inputs fall outside
            # the calibrated ranges (the DC-AE decoder's latents are not N(0, 1)).
            with _step(log, f"validate {precision} {name} on held-out trajectories against the fp32 graph"):
                report = validate_component(spec, stage / spec.file, held_out_references(job.held_out[name]),
                                            precision, reference="the fp32 graph")
        else:
            with _step(log, f"validate {precision} {name} with ONNX Runtime"):
                report = validate_component(spec, stage / spec.file, job.references[name], precision)
        extra = {"linear_attention_eps_constants": job.eps[name]} if spec.linear_attention else {}
        components[name] = component_record(stage / spec.file, report, extra, model)
    return components


def export_checkpoint(options: ExportOptions, log: Callable[[str], None] = print, job: ExportJob | None = None) -> Path:
    """Export `options.checkpoint`; `job` is `prepare(options)` when the caller already ran it."""
    job = job or prepare(options, log)
    out_dir = Path(options.out_dir)
    with staging_dir(out_dir) as stage:
        with _step(log, f"load checkpoint {job.source}"):
            pipe = load_sana_pipeline(job.source, job.controlnet, job.options.allow_pickle)
            model = model_values(pipe)
        files = write_support_files(stage, pipe)
        export_graphs(stage, pipe, model, job, log)
        del pipe
        gc.collect()  # the torch models are not needed past this point: free them for calibration
        if job.target == "openvino":  # OpenVINO IR in place of the ONNX graphs (NNCF for int8 / int4)
            from sana_edge.quant.openvino_export import export_openvino

            with _step(log, f"OpenVINO IR ({options.precision})"):
                quantization, components = export_openvino(draft_manifest(stage, model, files, job.components), job, log)
        else:
            quantization = quantize_graphs(stage, model, files, job, log) if job.quantized else None
            components = record_components(stage, model, job, log)
        with _step(log, "compute the text encoder's prompt cache (instruction prefix, \"\" negative) with the final graph"):
            prompt_cache = write_prompt_cache(stage, f"{TOKENIZER_DIR}/tokenizer.json", model, job.target)
        data = {
            "sana_edge_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": str(options.checkpoint), "precision": options.precision, "opset": OPSET,
            "tool_versions": tool_versions(), "model": model.to_dict(),
            "tokenizer": f"{TOKENIZER_DIR}/tokenizer.json", "scheduler_config": f"{SCHEDULER_DIR}/scheduler_config.json",
            "files": files, "components": components, "prompt_cache": prompt_cache,
        }
        if quantization is not None:
            data["quantization"] = quantization
        if job.target == "openvino":
            data["graph_format"] = "openvino"
        if job.flavor is not None:
            data["engines"] = _build_engines(stage, data, job, model, log)
        write_manifest(stage, data)
    log(f"export written to {out_dir}")
    return out_dir


def _build_engines(stage: Path, data: dict, job: ExportJob, model: ModelValues, log) -> dict:
    from sana_edge.prompt import PromptTokenizer

    from .engine import build_engines

    tokenizer = PromptTokenizer(stage / data["tokenizer"], model.complex_human_instruction, model.max_sequence_length)
    with _step(log, f"build TensorRT engines ({job.flavor.name} {job.flavor.version})"):
        return build_engines(stage, data, job.options.engines, job.flavor, tokenizer.text_encoder_length, log)


def tool_versions() -> dict:
    import importlib.metadata as md

    versions = {}
    for package in ("torch", "diffusers", "transformers", "onnx", "onnxruntime", "tokenizers"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    return versions
