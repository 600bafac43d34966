"""sha256 of export files, remembered across runs while a file is unchanged.

Verifying an export hashes every file before anything loads: ~13 GB for a full-size fp32 export,
tens of seconds on a laptop at every cold start. A digest is reused only while the file's
identity and metadata are the same as when it was hashed: path, inode, size, mtime and ctime
(ctime cannot be set back by a user, so editing the file and restoring its mtime still
re-hashes). The record lives in the per-user sana-edge cache, written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .fileio import write_json_atomic

RECORD_NAME = "file-digests.json"
MAX_ENTRIES = 2000  # the oldest are dropped beyond this (one export is ~10 files)


def _record_path() -> Path:
    from .default_model import sana_edge_home

    return sana_edge_home() / RECORD_NAME


def _identity(path: Path) -> list:
    stat = path.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _load() -> dict:
    try:
        data = json.loads(_record_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_sha256(path: Path) -> str:
    """sha256 of `path`, from the record when the file is unchanged since it was hashed."""
    from .manifest import sha256_file

    path = Path(path).resolve()
    key, identity = str(path), _identity(path)
    entry = _load().get(key)
    if isinstance(entry, dict) and entry.get("identity") == identity and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_file(path)
    if _identity(path) == identity:  # unchanged while we read it: worth remembering
        _remember(key, identity, digest)
    return digest


def _remember(key: str, identity: list, digest: str) -> None:
    record = _load()
    record.pop(key, None)
    record[key] = {"identity": identity, "sha256": digest}
    while len(record) > MAX_ENTRIES:
        record.pop(next(iter(record)))
    try:
        _record_path().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(_record_path(), record, indent=None)
    except OSError:
        pass  # a read-only cache folder only costs re-hashing next time
