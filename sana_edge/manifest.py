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
# How the runtime samples: "sana" (Flow-DPM-Solver with CFG, SanaPipeline) or "sprint"
# (SCM/TrigFlow with embedded guidance, SanaSprintPipeline).
PIPELINES = ("sana", "sprint")
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
    encoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024)
    # The sampler and its defaults (the diffusers pipeline's own call defaults, read at export).
    pipeline: str = "sana"
    default_steps: int = 20
    default_guidance: float = 4.5
    # Sana-Sprint: the transformer's guidance input and the SCM/TrigFlow schedule.
    guidance_embeds: bool = False
    guidance_embeds_scale: float = 0.1
    sigma_data: float = 0.5
    max_timesteps: float = 1.5708
    intermediate_timesteps: float = 1.3
    # Blocks of the controlnet exported beside the transformer (0: none).
    controlnet_layers: int = 0
    # The text encoder's K/V cache shape (Gemma-2-2B's by default; read from exports with a prefix cache).
    text_layers: int = 26
    text_kv_heads: int = 4
    text_head_dim: int = 256

    @property
    def default_size(self) -> int:
        """The checkpoint's base image side in px."""
        return self.sample_size * self.vae_scale_factor

    @property
    def learned_sigma(self) -> bool:
        return self.out_channels == 2 * self.latent_channels

    @property
    def sprint(self) -> bool:
        return self.pipeline == "sprint"

    def dims(self) -> dict:
        """Model dimensions that bind the fixed named axes of the component declarations."""
        return {"latent_channels": self.latent_channels, "out_channels": self.out_channels,
                "caption_channels": self.caption_channels, "vocab_size": self.vocab_size,
                "transformer_layers": self.transformer_layers, "cross_attention_heads": self.cross_attention_heads,
                "cross_attention_head_dim": self.cross_attention_head_dim,
                "inner_dim": self.transformer_inner_dim, "controlnet_layers": self.controlnet_layers,
                "text_layers": self.text_layers, "text_kv_heads": self.text_kv_heads,
                "text_head_dim": self.text_head_dim}

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
        if values.get("pipeline", "sana") not in PIPELINES:
            raise UserError(f"{where}: model value pipeline={values['pipeline']!r} is not one of "
                            f"{', '.join(PIPELINES)}; {REEXPORT} with this sana-edge")
        return cls(**values)


# Accepted range of each model value: wide enough for any SANA (and tiny test models), narrow
# enough that a damaged or hostile manifest cannot make the runtime allocate without bound.
_BOUNDS = {
    "latent_channels": (1, 4096), "out_channels": (1, 8192), "vae_scale_factor": (1, 1024),
    "vae_scaling_factor": (1e-6, 1e6), "sample_size": (1, 1024), "max_sequence_length": (2, 4096),
    "timestep_scale": (1e-6, 1e6), "caption_channels": (1, 1 << 16), "vocab_size": (1, 1 << 24),
    "flow_shift": (1e-6, 1e6), "decoder_block_out_channels": (1, 1 << 16), "transformer_inner_dim": (1, 1 << 20),
    "mlp_ratio": (1e-3, 1e3), "transformer_layers": (1, 1024), "cross_attention_heads": (1, 1024),
    "cross_attention_head_dim": (1, 4096),
    "controlnet_layers": (0, 1024), "default_steps": (1, 1000), "default_guidance": (0.0, 1e3),
    "guidance_embeds_scale": (0.0, 1e6), "max_timesteps": (1e-6, 1e3), "intermediate_timesteps": (1e-6, 1e3),
}
# Fields added later without a bound of their own: positive and not absurd.
_DEFAULT_BOUNDS = {"int": (1, 1 << 20), "float": (1e-6, 1e6), "tuple[int, ...]": (1, 1 << 20)}
_MAX_INSTRUCTION_CHARS = 100_000


def _typed(name: str, kind: str, value, where: str):
    """Convert a JSON value to the field's declared type, refusing what does not fit or is out of range."""
    low, high = _BOUNDS.get(name) or _DEFAULT_BOUNDS.get(kind, (None, None))
    label = kind.replace("tuple[", "list of ").replace(", ...]", "s").rstrip("]")
    bad = UserError(f"{where}: model value {name}={_short(value)} is not a valid {label}"
                    + (f" within {low}..{high}" if low is not None else "") + f"; {REEXPORT}")

    def number(item, integer: bool):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise bad
        if integer and not (isinstance(item, int) or float(item).is_integer()):
            raise bad
        item = int(item) if integer else float(item)
        if not (low <= item <= high):  # also refuses nan (every comparison is False) and inf
            raise bad
        return item

    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str) and len(value) <= 64:
        return value
    if kind in ("int", "float"):
        return number(value, kind == "int")
    if not isinstance(value, list):
        raise bad
    if kind == "tuple[str, ...]":
        if not all(isinstance(v, str) for v in value) or sum(map(len, value)) > _MAX_INSTRUCTION_CHARS:
            raise bad
        return tuple(value)
    if kind == "tuple[int, ...]" and 1 <= len(value) <= 16:
        return tuple(number(v, True) for v in value)
    raise bad


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def component_record(file: Path, validation: list, extra: dict | None = None, model: ModelValues | None = None) -> dict:
    """A component's manifest entry: its graph file (and external data) with sizes and hashes;
    the io record is the declaration as `model`'s graph has it."""
    from .components import COMPONENTS

    spec = COMPONENTS[file.stem] if file.stem in COMPONENTS else None
    if spec is not None and model is not None:
        spec = spec.for_model(model)
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


def file_record(file: Path, extra: dict | None = None) -> dict:
    """A support file's manifest entry (e.g. the prompt cache): name, sha256, size, and `extra`."""
    return {"file": file.name, "sha256": sha256_file(file), "bytes": file.stat().st_size, **(extra or {})}


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

    def spec(self, name: str):
        """The declaration of component `name` as this export's graph has it (sana_edge.components)."""
        from .components import COMPONENTS

        return COMPONENTS[name].for_model(self.model)

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
    def prompt_cache_path(self) -> Path | None:
        """The text encoder's prompt cache (sana_edge.prompt_cache); None in exports made before it."""
        record = self.data.get("prompt_cache")
        return self.path(record["file"]) if record else None

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
        if self.data.get("prompt_cache"):
            listed[self.data["prompt_cache"]["file"]] = self.data["prompt_cache"]["sha256"]
        return listed


def inside(root: Path, relative) -> Path:
    """`root / relative`, refused when `relative` is absolute, climbs out, or a symlink leaves root."""
    if not isinstance(relative, str) or not relative or len(relative) > 1024 or "\0" in relative:
        raise UserError(f"export '{root}' lists a file path {_short(relative)} that is not a relative path; {REEXPORT}")
    pure = PurePosixPath(relative)
    drive = any(":" in part for part in pure.parts[:1])  # C:\\... on Windows
    if pure.is_absolute() or relative.startswith(("\\", "/")) or drive or not pure.parts or ".." in pure.parts:
        raise UserError(f"export '{root}' lists '{relative}', which points outside the folder; refusing to read it "
                        f"({REEXPORT} or use an export you trust)")
    path = root / pure
    try:
        leaves = path.exists() and not path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop, a name the filesystem refuses
        raise UserError(f"'{relative}' in export '{root}' cannot be resolved (a symlink loop?); {REEXPORT}") from None
    if leaves:
        raise UserError(f"'{relative}' in export '{root}' is a link to a file outside the folder; refusing to follow it "
                        f"(copy the file into the folder or {REEXPORT})")
    return path


def load_manifest(root: str | Path, verify: bool = True) -> Manifest:
    """Read and check an export folder. `verify` also checks every file's sha256 (remembered while
    a file is unchanged: sana_edge.file_digests)."""
    from .file_digests import cached_sha256
    from .manifest_checks import check_structure

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
    check_structure(data, path)
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
