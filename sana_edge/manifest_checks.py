"""The shape of a manifest.json, checked before any value of it is used (sana_edge.manifest reads
it; this module only refuses): every defect is one line naming the field and the re-export."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .manifest import FORMAT_VERSION, PRECISIONS, REEXPORT, _short

_SHA256_HEX = frozenset("0123456789abcdef")


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_HEX


def check_structure(data, path: Path) -> None:
    """The manifest's shape, before any value of it is used: one line naming the first defect."""
    from .components import ENCODER, SINGLE_GRAPH, SPLIT_GRAPH, TRANSFORMER_STEP

    if not isinstance(data, dict):
        raise UserError(f"{path} is not a sana-edge manifest (a JSON object); {REEXPORT}")
    version = data.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise UserError(f"{path} has format version {_short(version)}, this sana-edge reads version {FORMAT_VERSION}; "
                        "re-export the model with this version of sana-edge")
    if not isinstance(data.get("precision"), str) or data["precision"] not in PRECISIONS:
        raise UserError(f"{path} has precision {_short(data.get('precision'))}, not one of {', '.join(PRECISIONS)}; {REEXPORT}")
    components = data.get("components")
    if not isinstance(components, dict) or not components:
        raise UserError(f"{path} lists no components; {REEXPORT}")
    layout = SPLIT_GRAPH if TRANSFORMER_STEP.name in components else SINGLE_GRAPH  # as the pipeline picks
    # The VAE encoder is optional: exports made before img2img and optimum imports have none, and
    # img2img / ControlNet on them say so (ImageEncoder.require).
    missing = [name for name in layout if name not in components and name != ENCODER.name]
    if missing:
        raise UserError(f"{path} lacks the component(s) {', '.join(missing)}; {REEXPORT}")
    for name, entry in components.items():
        _check_file_entry(entry, f"{path}: component '{name}'")
        bytes_ = entry.get("bytes")
        if isinstance(bytes_, bool) or not isinstance(bytes_, int) or bytes_ < 0:
            raise UserError(f"{path}: component '{name}' has no valid size in bytes; {REEXPORT}")
        _check_hash_map(entry.get("external_data"), f"{path}: component '{name}' external_data")
    for key in ("tokenizer", "scheduler_config"):
        if not isinstance(data.get(key), str):
            raise UserError(f"{path} names no {key} file; {REEXPORT}")
    _check_hash_map(data.get("files"), f"{path}: 'files'")
    engines = data.get("engines")
    if engines is not None:
        if not isinstance(engines, dict) or not isinstance(engines.get("components", {}), dict):
            raise UserError(f"{path}: 'engines' is not a valid engine record; {REEXPORT}")
        if "flavor" in engines and not isinstance(engines["flavor"], str):
            raise UserError(f"{path}: the engines' flavor {_short(engines['flavor'])} is not a name; {REEXPORT}")
        for name, entry in engines.get("components", {}).items():
            _check_file_entry(entry, f"{path}: engine '{name}'")
    cache = data.get("prompt_cache")  # optional: exports made before the prefix cache lack it
    if cache is not None:
        _check_file_entry(cache, f"{path}: 'prompt_cache'")


def _check_file_entry(entry, where: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not _is_sha256(entry.get("sha256")):
        raise UserError(f"{where} has no file and sha256; {REEXPORT}")


def _check_hash_map(value, where: str) -> None:
    """A {relative path: sha256} record (optional)."""
    if value is None:
        return
    if not isinstance(value, dict) or not all(_is_sha256(digest) for digest in value.values()):
        raise UserError(f"{where} is not a map of file paths to sha256 hashes; {REEXPORT}")
