"""The built-in default model: shapes-SANA, a small SANA trained on the shapes task
(sana_edge.shapes, export/train_shapes.py), shipped with the package in diffusers layout.

`sana-edge export` with no checkpoint exports it to `default_export_dir()`, and `sana-edge run`
with no --model generates from there, so `make demo` and then `sana-edge run "a green triangle
on the right on a white background"` work on a fresh machine without any download.
"""

from __future__ import annotations

import os
from pathlib import Path

BUILTIN_NAME = "shapes-sana"
# A prompt the model knows (the shapes grammar: see sana_edge.shapes).
EXAMPLE_PROMPT = "A big green triangle on the right, white background"


def shipped_checkpoint() -> Path:
    return Path(__file__).parent / "models" / BUILTIN_NAME


def sana_edge_home() -> Path:
    """Root of sana-edge's per-user files (engine cache, default export): $SANA_EDGE_CACHE."""
    return Path(os.environ.get("SANA_EDGE_CACHE", Path.home() / ".cache" / "sana-edge"))


def default_export_dir() -> Path:
    return sana_edge_home() / "default-export"


def is_builtin(checkpoint: str | Path) -> bool:
    """The name `shapes-sana` means the shipped model unless a local folder of that name exists."""
    return str(checkpoint) == BUILTIN_NAME and not Path(checkpoint).exists()
