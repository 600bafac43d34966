"""optimum-onnx's Sana folder layout, and `sana-edge convert`: a sana-edge export written as a
folder that optimum's `ORTSanaPipeline.from_pretrained` loads.

The layout (optimum-onnx 0.1.0, FIELD_NOTES.md): `model_index.json`, `scheduler/`, `tokenizer/`
and one folder per component (`text_encoder/`, `transformer/`, `vae_decoder/`; optimum also
writes `vae_encoder/`, which text-to-image does not need), each holding `model.onnx` (weights
over 2 GB in `model.onnx_data`) and the component's diffusers/transformers `config.json`. The
graphs are the same; only the tensor names differ, and those are mapped through the component
declarations (`TensorSpec.optimum_name` in sana_edge.components).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sana_edge.components import COMPONENTS, TEXT_ENCODER
from sana_edge.errors import UserError

from .optimum_text_encoder import drop_past
from .source_configs import SOURCE_FOLDERS, config_file

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx_data"
TOKENIZER_CLASS = "GemmaTokenizerFast"  # tokenizer.json only: loads under transformers 4.x and 5.x
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
OPTIMUM_EXPORT = "optimum-cli export onnx --model CHECKPOINT --task text-to-image DIR"


def rename_graph_io(model, mapping: dict[str, str]) -> None:
    """Rename graph inputs/outputs (and every reference to them) from the keys to the values."""
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        value.name = mapping.get(value.name, value.name)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = mapping.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = mapping.get(name, name)


def _external_locations(model) -> set[str]:
    from onnx import TensorProto

    return {entry.value for tensor in model.graph.initializer if tensor.data_location == TensorProto.EXTERNAL
            for entry in tensor.external_data if entry.key == "location"}


def _place(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` when they share a filesystem (graph data can be GBs), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def copy_renamed_graph(source: Path, target: Path, mapping: dict[str, str], data_name: str,
                       rewrite: Callable | None = None) -> None:
    """Write the graph at `source` to `target` with its I/O renamed (after `rewrite(model)`, if
    given); external weights (one file, as both tools write them) are placed next to it as
    `data_name`, never loaded into memory."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    if rewrite is not None:
        rewrite(model)
    rename_graph_io(model, mapping)
    locations = _external_locations(model)
    if len(locations) > 1:
        raise UserError(f"{source} keeps its weights in {len(locations)} files; save it with one external data file first")
    for location in locations:
        data = source.parent / location
        if not data.is_file():
            raise UserError(f"{source} refers to weights in {location}, which is missing; copy the whole folder")
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
        _place(data, target.parent / data_name)
    onnx.save(model, str(target))


def graph_io_names(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers], [o.name for o in model.graph.output]


def model_index(text_encoder_config: dict, scheduler_config: dict, diffusers_version: str) -> dict:
    return {
        "_class_name": "SanaPipeline",
        "_diffusers_version": diffusers_version,
        "scheduler": ["diffusers", scheduler_config.get("_class_name", "DPMSolverMultistepScheduler")],
        "text_encoder": ["transformers", (text_encoder_config.get("architectures") or ["Gemma2Model"])[0]],
        "tokenizer": ["transformers", TOKENIZER_CLASS],
        "transformer": ["diffusers", "SanaTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderDC"],
    }


def copy_tokenizer(source: Path, target: Path) -> None:
    """tokenizer.json and its config, with the fast tokenizer class: transformers 5 saves Gemma's
    as `GemmaTokenizer`, which transformers 4.x (optimum's pin) reads as the sentencepiece one
    and fails to load without a tokenizer.model."""
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config["tokenizer_class"] = TOKENIZER_CLASS
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def convert_export(export_dir: Path, out_dir: Path, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Write the sana-edge export at `export_dir` as an optimum-onnx Sana folder at `out_dir`."""
    from sana_edge.manifest import load_manifest

    from .staging import check_out_dir, staging_dir

    manifest = load_manifest(export_dir)
    if manifest.graph_format != "onnx":
        raise UserError(f"export '{export_dir}' holds {manifest.graph_format} graphs; optimum runs ONNX: "
                        "convert an export made with --target ort (the default)")
    if "transformer" not in manifest.components:
        raise UserError(f"export '{export_dir}' splits the transformer into caption_kv + transformer_step graphs; "
                        "optimum runs one transformer graph: re-export with --single-transformer, then convert")
    if manifest.model.pipeline != "sana" or manifest.model.controlnet_layers:
        kind = "a controlnet" if manifest.model.controlnet_layers else f"a {manifest.model.pipeline} model"
        raise UserError(f"export '{export_dir}' holds {kind}; optimum-onnx's ORTSanaPipeline runs plain SanaPipeline "
                        "exports only: convert an export of a Sana checkpoint made without --controlnet")
    missing = [c for c in SOURCE_FOLDERS if not config_file(manifest.root, c).is_file()]
    if missing:
        raise UserError(f"export '{export_dir}' has no component configs (made by an older sana-edge); "
                        "re-export it with `sana-edge export CHECKPOINT -o DIR`, then convert")
    check_out_dir(out_dir, force)
    with staging_dir(out_dir) as stage:
        for name in SOURCE_FOLDERS:
            spec, folder = COMPONENTS[name].for_model(manifest.model), stage / name
            folder.mkdir()
            # optimum feeds the text encoder whole sequences: its graph without the past K/V cache
            rewrite = drop_past if name == TEXT_ENCODER.name else None
            copy_renamed_graph(manifest.component_path(name), folder / MODEL_FILE, spec.optimum_names(), DATA_FILE, rewrite)
            shutil.copyfile(config_file(manifest.root, name), folder / "config.json")
            log(f"{name}: {manifest.components[name]['file']} -> {name}/{MODEL_FILE}")
        copy_tokenizer(manifest.tokenizer_path.parent, stage / "tokenizer")
        shutil.copytree(manifest.root / Path(manifest.data["scheduler_config"]).parent, stage / "scheduler")
        text_config = json.loads(config_file(manifest.root, "text_encoder").read_text())
        diffusers_version = manifest.data.get("tool_versions", {}).get("diffusers", "0.32.0")
        index = model_index(text_config, manifest.scheduler_config, diffusers_version)
        (stage / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    log(f"optimum-onnx folder written to {out_dir} (load it with ORTSanaPipeline.from_pretrained)")
    return out_dir


def check_optimum_folder(folder: Path) -> None:
    """Refuse, with the fix, a folder that is not a complete optimum-onnx Sana export."""
    redo = f"re-export it with `{OPTIMUM_EXPORT}`"
    if not folder.is_dir():
        raise UserError(f"optimum folder '{folder}' does not exist; pass the folder `{OPTIMUM_EXPORT}` wrote")
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise UserError(f"'{folder}' is not an optimum-onnx export (no model_index.json); pass the folder `{OPTIMUM_EXPORT}` wrote")
    try:
        class_name = json.loads(index_file.read_text()).get("_class_name")
    except (ValueError, AttributeError):
        raise UserError(f"{index_file} is not a readable pipeline index; {redo}") from None
    if "Sana" not in str(class_name):
        raise UserError(f"'{folder}' holds a {class_name} export, not SANA; pass an optimum export of a SanaPipeline")
    for name in SOURCE_FOLDERS:
        for file in (MODEL_FILE, "config.json"):
            if not (folder / name / file).is_file():
                raise UserError(f"optimum folder '{folder}' lacks the {name} component ({name}/{file}); {redo}")
    for required in ("tokenizer/tokenizer.json", "scheduler/scheduler_config.json"):
        if not (folder / required).is_file():
            raise UserError(f"optimum folder '{folder}' lacks {required}; {redo}")


__all__ = ["SOURCE_FOLDERS", "check_optimum_folder", "convert_export", "copy_renamed_graph", "graph_io_names", "rename_graph_io"]
