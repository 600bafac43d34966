"""manifest.json: what an export folder holds, and the checks run before anything is loaded."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Model config values the runtime reads (written by the exporter from the checkpoint config).
REQUIRED_MODEL_KEYS = (
    "latent_channels", "out_channels", "vae_scale_factor", "vae_scaling_factor", "sample_size",
    "max_sequence_length", "complex_human_instruction", "timestep_scale",
)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


@dataclass
class Manifest:
    root: Path
    data: dict

    @property
    def model(self) -> dict:
        return self.data["model"]

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def components(self) -> dict:
        return self.data["components"]

    def component_path(self, name: str) -> Path:
        return self.root / self.components[name]["file"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.data["tokenizer"]

    @property
    def scheduler_config(self) -> dict:
        return json.loads((self.root / self.data["scheduler_config"]).read_text())

    def files(self) -> dict[str, str]:
        """Every file the manifest vouches for: relative path -> sha256."""
        listed = dict(self.data.get("files", {}))
        for entry in self.components.values():
            listed[entry["file"]] = entry["sha256"]
            for data_file, digest in entry.get("external_data", {}).items():
                listed[data_file] = digest
        for entry in self.engines.get("components", {}).values():
            listed[entry["file"]] = entry["sha256"]
        return listed

    @property
    def graph_format(self) -> str:
        """"onnx", or "openvino" for the IR of a `--target openvino` export."""
        return self.data.get("graph_format", "onnx")

    @property
    def engines(self) -> dict:
        """The TensorRT engine record ({} when the export has no engines)."""
        return self.data.get("engines") or {}


def load_manifest(root: str | Path, verify: bool = True) -> Manifest:
    """Read and check an export folder. `verify` also checks every file's sha256."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise UserError(f"export folder '{root}' does not exist; create one with `sana-edge export CHECKPOINT -o {root}`")
    if not path.is_file():
        raise UserError(f"'{root}' is not a sana-edge export (no {MANIFEST_NAME}); run `sana-edge export` into it")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); re-run `sana-edge export`") from None
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"{path} has format version {version!r}, this sana-edge reads version {FORMAT_VERSION}; "
            "re-export the model with this version of sana-edge"
        )
    missing_keys = [k for k in REQUIRED_MODEL_KEYS if k not in data.get("model", {})]
    if missing_keys:
        raise UserError(f"{path} lacks model values {', '.join(missing_keys)}; re-run `sana-edge export`")
    manifest = Manifest(root, data)
    for rel, digest in manifest.files().items():
        file = root / rel
        if not file.is_file():
            raise UserError(f"export folder '{root}' is missing {rel}; re-run `sana-edge export` (or copy the whole folder)")
        if verify and sha256_file(file) != digest:
            raise UserError(
                f"{rel} in '{root}' does not match the sha256 in {MANIFEST_NAME} (corrupt or modified); "
                "re-run `sana-edge export`"
            )
    return manifest
