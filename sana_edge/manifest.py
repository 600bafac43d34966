"""manifest.json: the one module that writes and reads what an export folder holds.

An export folder is something users download and share, so reading one trusts nothing: every
path must stay inside the folder (no absolute paths, no `..`, no symlink leaving it), every file
the runtime opens is listed with its sha256, and the model values are typed and checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path, PurePosixPath

from .errors import UserError
from .fileio import write_json_atomic

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
REEXPORT = "re-run `sana-edge export`"


@dataclass(frozen=True)
class ModelValues:
    """Checkpoint config values the runtime reads, written by the exporter."""

    latent_channels: int
    out_channels: int
    vae_scale_factor: int
    vae_scaling_factor: float
    sample_size: int
    max_sequence_length: int
    complex_human_instruction: tuple[str, ...]
    timestep_scale: float
    caption_channels: int = 2304
    vocab_size: int = 256000
    flow_shift: float = 3.0
    # For the memory planner's activation estimates (sana_edge.components).
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024)
    transformer_inner_dim: int = 1152
    mlp_ratio: float = 2.5
    # Shapes of the caption K/V the split transformer graphs exchange (sana_edge.components).
    transformer_layers: int = 28
    cross_attention_heads: int = 16
    cross_attention_head_dim: int = 72

    @property
    def default_size(self) -> int:
        """The checkpoint's base image side in px."""
        return self.sample_size * self.vae_scale_factor

    @property
    def learned_sigma(self) -> bool:
        return self.out_channels == 2 * self.latent_channels

    def dims(self) -> dict:
        """Model dimensions that bind the fixed named axes of the component declarations."""
        return {"latent_channels": self.latent_channels, "out_channels": self.out_channels,
                "caption_channels": self.caption_channels, "vocab_size": self.vocab_size,
                "transformer_layers": self.transformer_layers, "cross_attention_heads": self.cross_attention_heads,
                "cross_attention_head_dim": self.cross_attention_head_dim}

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data, where: str = MANIFEST_NAME) -> "ModelValues":
        if not isinstance(data, dict):
            raise UserError(f"{where} has no model values (\"model\" is {type(data).__name__}); {REEXPORT}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise UserError(f"{where} lacks model values {', '.join(missing)}; {REEXPORT}")
        values = {}
        for f in fields(cls):
            if f.name in data:
                values[f.name] = _typed(f.name, f.type, data[f.name], where)
        return cls(**values)


def _typed(name: str, kind: str, value, where: str):
    """Convert a JSON value to the field's declared type, refusing what does not fit."""
    bad = UserError(f"{where}: model value {name}={value!r} is not a valid {kind.replace('tuple[', '').rstrip(']')}; {REEXPORT}")
    try:
        if kind == "int":
            if isinstance(value, bool) or not float(value).is_integer() or int(value) <= 0:
                raise bad
            return int(value)
        if kind == "float":
            number = float(value)
            if isinstance(value, bool) or not (abs(number) < float("inf")):
                raise bad
            return number
        if kind == "tuple[str, ...]":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad
            return tuple(value)
        if kind == "tuple[int, ...]":
            if not isinstance(value, list) or not value or not all(isinstance(v, int) and v > 0 for v in value):
                raise bad
            return tuple(value)
    except (TypeError, ValueError):
        raise bad from None
    raise bad


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def component_record(file: Path, validation: list, extra: dict | None = None) -> dict:
    """A component's manifest entry: its graph file (and external data) with sizes and hashes."""
    from .components import COMPONENTS

    spec = COMPONENTS[file.stem] if file.stem in COMPONENTS else None
    entry = {"file": file.name, "sha256": sha256_file(file), "bytes": file.stat().st_size}
    if spec is not None:
        entry["inputs"] = [{"name": t.name, "dtype": t.dtype, "axes": list(t.axes)} for t in spec.inputs]
        entry["outputs"] = [{"name": t.name, "dtype": t.dtype, "axes": list(t.axes)} for t in spec.outputs]
        entry["dynamic_axes"] = {k: {str(i): a for i, a in v.items()} for k, v in spec.dynamic_axes().items()}
    data_file = file.with_name(file.name + ".data")
    if data_file.exists():
        entry["external_data"] = {data_file.name: sha256_file(data_file)}
        entry["bytes"] += data_file.stat().st_size
    entry["validation"] = validation
    entry.update(extra or {})
    return entry


def folder_records(root: Path, folders: tuple[str, ...]) -> dict[str, str]:
    """relative path -> sha256 of every file under `folders` of `root` (tokenizer, scheduler)."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for folder in folders for p in sorted((root / folder).rglob("*")) if p.is_file()
    }


def write_manifest(root: Path, data: dict) -> Path:
    return write_json_atomic(root / MANIFEST_NAME, {"format_version": FORMAT_VERSION, **data})


@dataclass
class Manifest:
    root: Path
    data: dict
    model: ModelValues
    verified: bool = False  # every file's sha256 was checked when it was loaded

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def components(self) -> dict:
        return self.data["components"]

    def component_path(self, name: str) -> Path:
        return self.path(self.components[name]["file"])

    def path(self, relative: str) -> Path:
        """A file of this export, refused unless it stays inside the folder."""
        return inside(self.root, relative)

    @property
    def tokenizer_path(self) -> Path:
        return self.path(self.data["tokenizer"])

    @property
    def scheduler_config(self) -> dict:
        path = self.path(self.data["scheduler_config"])
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path} is not a readable scheduler config ({type(exc).__name__}); {REEXPORT}") from None
        if not isinstance(config, dict):
            raise UserError(f"{path} is not a scheduler config (a JSON object); {REEXPORT}")
        return config

    @property
    def graph_format(self) -> str:
        """"onnx", or "openvino" for the IR of a `--target openvino` export."""
        value = self.data.get("graph_format", "onnx")
        if value not in ("onnx", "openvino"):
            raise UserError(f"export '{self.root}' has graph format {value!r}, which this sana-edge does not run; {REEXPORT}")
        return value

    @property
    def engines(self) -> dict:
        """The TensorRT engine record ({} when the export has no engines)."""
        return self.data.get("engines") or {}

    def files(self) -> dict[str, str]:
        """Every file the manifest vouches for: relative path -> sha256."""
        listed = dict(self.data.get("files") or {})
        for entry in self.components.values():
            listed[entry["file"]] = entry["sha256"]
            listed.update(entry.get("external_data") or {})
        for entry in (self.engines.get("components") or {}).values():
            listed[entry["file"]] = entry["sha256"]
        return listed


def inside(root: Path, relative) -> Path:
    """`root / relative`, refused when `relative` is absolute, climbs out, or a symlink leaves root."""
    if not isinstance(relative, str) or not relative:
        raise UserError(f"export '{root}' lists a file path {relative!r} that is not a relative path; {REEXPORT}")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or relative.startswith(("\\", "/")) or ":" in pure.parts[0] or ".." in pure.parts:
        raise UserError(f"export '{root}' lists '{relative}', which points outside the folder; refusing to read it "
                        f"({REEXPORT} or use an export you trust)")
    path = root / pure
    resolved_root = root.resolve()
    if path.exists() and not path.resolve().is_relative_to(resolved_root):
        raise UserError(f"'{relative}' in export '{root}' is a link to a file outside the folder; refusing to follow it "
                        f"(copy the file into the folder or {REEXPORT})")
    return path


def _check_structure(data, path: Path) -> None:
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a sana-edge manifest (a JSON object); {REEXPORT}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(f"{path} has format version {version!r}, this sana-edge reads version {FORMAT_VERSION}; "
                        "re-export the model with this version of sana-edge")
    if data.get("precision") not in PRECISIONS:
        raise UserError(f"{path} has precision {data.get('precision')!r}, not one of {', '.join(PRECISIONS)}; {REEXPORT}")
    components = data.get("components")
    if not isinstance(components, dict) or not components:
        raise UserError(f"{path} lists no components; {REEXPORT}")
    for name, entry in components.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("sha256"), str):
            raise UserError(f"{path}: component '{name}' has no file and sha256; {REEXPORT}")
    for key in ("tokenizer", "scheduler_config"):
        if not isinstance(data.get(key), str):
            raise UserError(f"{path} names no {key} file; {REEXPORT}")
    for key in ("files", "engines"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise UserError(f"{path}: '{key}' is not a JSON object; {REEXPORT}")


def load_manifest(root: str | Path, verify: bool = True) -> Manifest:
    """Read and check an export folder. `verify` also checks every file's sha256 (remembered while
    a file is unchanged: sana_edge.file_digests)."""
    from .file_digests import cached_sha256

    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.exists():
        raise UserError(f"export folder '{root}' does not exist; create one with `sana-edge export CHECKPOINT -o {root}`")
    if not root.is_dir():
        raise UserError(f"'{root}' is a file, not an export folder; pass the folder `sana-edge export` wrote")
    if not path.is_file():
        raise UserError(f"'{root}' is not a sana-edge export (no {MANIFEST_NAME}); run `sana-edge export` into it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; {REEXPORT}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); {REEXPORT}") from None
    _check_structure(data, path)
    manifest = Manifest(root, data, ModelValues.from_dict(data.get("model"), str(path)))
    listed = manifest.files()
    for key in ("tokenizer", "scheduler_config"):  # read by the runtime, so they must be vouched for
        if data[key] not in listed:
            raise UserError(f"{path}: the {key} file '{data[key]}' has no sha256 in the manifest; {REEXPORT}")
    for rel, digest in listed.items():
        file = manifest.path(rel)
        if not file.is_file():
            raise UserError(f"export folder '{root}' is missing {rel}; {REEXPORT} (or copy the whole folder)")
        if verify and cached_sha256(file) != digest:
            raise UserError(f"{rel} in '{root}' does not match the sha256 in {MANIFEST_NAME} (corrupt or modified); {REEXPORT}")
    manifest.verified = verify
    return manifest
