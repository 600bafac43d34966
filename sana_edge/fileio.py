"""Atomic file writes: every file sana-edge produces (manifest, images, JSON results, engines)
appears whole or not at all, even with several writers racing to the same path.

The temp file is a unique sibling (same folder, so `os.replace` is an atomic rename on one
filesystem); a fixed temp name would let two writers interleave their bytes in one file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# mkstemp creates files readable by the owner only; the renamed file should carry the mode any
# other new file gets (0o666 less the umask). os.umask can only be read by setting it, so once, here.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK  # for folders made by mkdtemp (0o700) that become user-visible outputs


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then rename it onto `path`."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, FILE_MODE)
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data, indent: int = 2) -> Path:
    """Strict JSON (no NaN/Infinity tokens: see sana_edge.metrics.json_safe for results)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")
