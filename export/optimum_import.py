"""`sana-edge import OPTIMUM_DIR -o OUT`: an optimum-onnx Sana export as a sana-edge export.

The graphs are kept as optimum traced them; their inputs and outputs are renamed to the names
the component declarations spell (sana_edge.components), the model values come from the
component configs optimum writes, and the manifest hashes every file, as `sana-edge export` does.

Trust, measured (FIELD_NOTES.md): optimum-onnx traces Gemma-2 with SDPA attention, which drops
the attention logit soft-capping (cosine 0.9978 against eager attention on a checkpoint with
large q/k weights), and its own check compares against that same SDPA model, so it passes.
Here the text encoder graph is checked structurally (soft-capping's Tanh per layer) and, when
the checkpoint is at hand (`--checkpoint`), every graph is validated against PyTorch with eager
attention; a text encoder traced with SDPA gets a warning with the measured cosine.
"""

from __future__ import annotations

import datetime
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sana_edge import __version__
from sana_edge.components import COMPONENTS, LEGACY_TEXT_ENCODER, sample_inputs
from sana_edge.errors import UserError

from .optimum_layout import MODEL_FILE, OPTIMUM_EXPORT, check_optimum_folder, copy_renamed_graph, graph_io_names
from .source_configs import CONFIGS_DIR, SOURCE_FOLDERS, config_file, model_values_from_configs, read_config

OPTIMUM_COMPONENTS = tuple(SOURCE_FOLDERS)  # the text-to-image graphs optimum-onnx exports and runs


class OptimumTraceWarning(UserWarning):
    """What an optimum-onnx graph computes differently from the checkpoint (printed by the CLI)."""


def attention_softcapping_kept(graph_path: Path, text_config: dict) -> bool:
    """Whether the text encoder graph computes Gemma-2's attention soft-capping. Eager attention
    applies tanh(scores / cap) * cap in every layer; SDPA has no place for it. The MLP's
    tanh-approximated GELU adds one Tanh per layer too, so count against both."""
    import onnx

    if not text_config.get("attn_logit_softcapping"):
        return True  # nothing to drop
    layers = int(text_config.get("num_hidden_layers", 0))
    mlp_tanh = layers if "tanh" in str(text_config.get("hidden_activation") or text_config.get("hidden_act")) else 0
    model = onnx.load(str(graph_path), load_external_data=False)
    return sum(node.op_type == "Tanh" for node in model.graph.node) >= layers + mlp_tanh


def graph_precision(path: Path) -> str:
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    if "MatMulNBits" in ops:
        return "int4"
    if ops & {"DequantizeLinear", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeLinear"}:
        return "int8"
    return "fp16" if any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer) else "fp32"


def optimum_declaration(name: str, model):
    """The declaration optimum's graph of `name` follows, as `model` has it: its text encoder runs
    whole sequences with no past K/V cache (the runtime's full-sequence path; no prompt cache is written)."""
    return (LEGACY_TEXT_ENCODER if name == LEGACY_TEXT_ENCODER.name else COMPONENTS[name]).for_model(model)


def _import_graph(source: Path, stage: Path, name: str, model) -> Path:
    spec = optimum_declaration(name, model)
    to_sana = {optimum: sana for sana, optimum in spec.optimum_names().items()}
    target = stage / spec.file
    copy_renamed_graph(source / name / MODEL_FILE, target, to_sana, spec.file + ".data")
    inputs, outputs = graph_io_names(target)
    if sorted(inputs) != sorted(spec.input_names) or outputs != spec.output_names:
        expected = [spec.optimum_names()[n] for n in spec.input_names + spec.output_names]
        got = inputs + outputs
        raise UserError(f"{name}/{MODEL_FILE} in '{source}' has inputs/outputs {got} where optimum's Sana export has "
                        f"{expected}; re-export it with `{OPTIMUM_EXPORT}`")
    return target


def _smoke_report(spec, path: Path, dims: dict) -> list[dict]:
    """Without the checkpoint: the graph runs on the declared shapes and gives finite outputs."""
    from sana_edge.backends.onnxruntime_backend import OrtSession

    session = OrtSession(path, ["CPUExecutionProvider"])
    report = []
    for index, binding in enumerate(spec.validation_shapes):
        outputs = session.run(sample_inputs(spec, {**dims, **binding}, seed=index + 1))
        for name in spec.output_names:
            finite = bool(np.isfinite(outputs[name]).all())
            report.append({"shape": binding, "output": name, "finite": finite, "reference": "none (no --checkpoint)"})
            if not finite:
                raise UserError(f"{spec.name} from the optimum export gives non-finite values at {binding}; "
                                f"re-export it with `{OPTIMUM_EXPORT}`")
    session.close()
    return report


def _validated(spec, path: Path, references, precision: str, softcapped: bool) -> list[dict]:
    from .validate import compare_outputs, validate_component

    if spec.name != "text_encoder" or softcapped:
        return validate_component(spec, path, references, precision)
    report = compare_outputs(spec, path, references)
    worst = min(entry["cosine"] for entry in report)
    shown = f"{worst:.6f}" if worst < 0.999999 else f"1 - {max(1.0 - worst, 0.0):.1e}"
    warnings.warn(f"the optimum text encoder was traced with SDPA attention, which drops Gemma-2's attention "
                  f"soft-capping: cosine {shown} against eager attention on the validation shapes; "
                  "`sana-edge export CHECKPOINT` exports it with eager attention", OptimumTraceWarning, stacklevel=2)
    return report


def import_optimum(source: Path, out_dir: Path, checkpoint: str | None = None, force: bool = False,
                   log: Callable[[str], None] = print) -> Path:
    from sana_edge.manifest import component_record, folder_records, write_manifest

    from .exporter import tool_versions
    from .staging import check_out_dir, staging_dir

    source = Path(source)
    check_optimum_folder(source)
    check_out_dir(out_dir, force)
    redo = f"re-export it with `{OPTIMUM_EXPORT}`"
    configs = {name: read_config(source / name / "config.json", redo) for name in OPTIMUM_COMPONENTS}
    scheduler = read_config(source / "scheduler" / "scheduler_config.json", redo)
    model = model_values_from_configs(configs, scheduler)
    pipe = None
    if checkpoint is not None:
        from .checkpoint import load_sana_pipeline, resolve_checkpoint

        pipe = load_sana_pipeline(resolve_checkpoint(checkpoint))  # eager attention: the reference
    with staging_dir(out_dir) as stage:
        paths = {name: _import_graph(source, stage, name, model) for name in OPTIMUM_COMPONENTS}
        precision = graph_precision(paths["transformer"])
        softcapped = attention_softcapping_kept(paths["text_encoder"], configs["text_encoder"])
        if not softcapped and pipe is None:
            warnings.warn("the optimum text encoder was traced with SDPA attention, which drops Gemma-2's attention "
                          "soft-capping; pass --checkpoint CHECKPOINT to measure how far it drifts, or export with "
                          "`sana-edge export CHECKPOINT` (eager attention)", OptimumTraceWarning, stacklevel=2)
        components = {}
        for name, spec in ((n, optimum_declaration(n, model)) for n in OPTIMUM_COMPONENTS):
            if pipe is None:
                report = _smoke_report(spec, paths[name], model.dims())
            else:
                from .validate import reference_outputs
                from .wrappers import torch_module

                references = reference_outputs(spec, torch_module(spec, pipe), model.dims())
                report = _validated(spec, paths[name], references, precision, softcapped)
            components[name] = component_record(paths[name], report, _eps_record(spec, paths[name]), model)
            log(f"{name}: {name}/{MODEL_FILE} -> {spec.file} ({precision}, "
                f"{'validated against PyTorch' if pipe is not None else 'ran on the declared shapes'})")
        for name in OPTIMUM_COMPONENTS:
            target = config_file(stage, name)
            target.parent.mkdir(parents=True)
            shutil.copyfile(source / name / "config.json", target)
        shutil.copytree(source / "tokenizer", stage / "tokenizer")
        shutil.copytree(source / "scheduler", stage / "scheduler")
        files = folder_records(stage, ("tokenizer", "scheduler", CONFIGS_DIR))
        manifest = {
            "sana_edge_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": f"optimum-onnx export {source.resolve()}", "precision": precision,
            "opset": _opset(paths["transformer"]), "tool_versions": tool_versions(), "model": model.to_dict(),
            "tokenizer": "tokenizer/tokenizer.json", "scheduler_config": "scheduler/scheduler_config.json",
            "files": files, "components": components,
            "imported": {"layout": "optimum-onnx", "folder": str(source.resolve()), "checkpoint": checkpoint,
                         "text_encoder_attention": "eager (soft-capping kept)" if softcapped else "sdpa (soft-capping dropped)",
                         "pipeline_index": json.loads((source / "model_index.json").read_text())},
        }
        write_manifest(stage, manifest)
    log(f"sana-edge export written to {out_dir}")
    return out_dir


def _eps_record(spec, path: Path) -> dict:
    """The linear-attention eps count of a DiT / decoder graph (an optimum export keeps it: its
    exporter does not run onnxscript's optimizer); a graph without it is refused."""
    import onnx

    from .onnx_export import count_eps

    if not spec.linear_attention:
        return {}
    count = count_eps(onnx.load(str(path), load_external_data=False))
    if count == 0:
        raise UserError(f"{spec.name} in the optimum export lost the linear-attention eps (1e-15), so it decodes wrong "
                        f"values; re-export it with `sana-edge export CHECKPOINT`")
    return {"linear_attention_eps_constants": count}


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


__all__ = ["OptimumTraceWarning", "attention_softcapping_kept", "graph_precision", "import_optimum"]
