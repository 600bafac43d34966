"""OUTDIR/index.jsonl: one JSON record per finished item (made or failed), appended as items finish.

A record is written only after its PNG is renamed into place, and each line is flushed and
fsynced, so after a crash the index never names a missing or partial image; a torn last line is
ignored. On a re-run the index is compacted (last record per key) and an item counts as done
only when its record says ok and its PNG is there with the recorded sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..fileio import write_text_atomic

INDEX = "index.jsonl"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_index(outdir: Path) -> dict[str, dict]:
    """key -> latest record; unreadable lines (a write cut short) are skipped."""
    path = outdir / INDEX
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "key" in record:
            records[record["key"]] = record
    return records


def is_done(record: dict | None, outdir: Path) -> bool:
    """The record says ok and its image is on disk with the sha256 it recorded."""
    if not record or record.get("status") != "ok":
        return False
    path = outdir / str(record.get("file", ""))
    if not path.is_file() or path.parent != outdir:
        return False
    return sha256_bytes(path.read_bytes()) == record.get("sha256")


def compact_index(outdir: Path, records: dict[str, dict]) -> None:
    """Rewrite the index with one line per key (atomically: the old one stays until the rename)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records.values())
    write_text_atomic(outdir / INDEX, text)


class IndexWriter:
    def __init__(self, outdir: Path):
        self._handle = open(outdir / INDEX, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
