"""Export verification remembers digests of unchanged files, and re-hashes any change."""

from __future__ import annotations

import os

from sana_edge import file_digests
from sana_edge.manifest import sha256_file


def test_digest_is_reused_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "graph.onnx"
    path.write_bytes(b"a" * 1000)
    hashed = []
    real = file_digests.__dict__.get("sha256_file")
    import sana_edge.manifest as manifest

    original = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: hashed.append(p) or original(p))
    first = file_digests.cached_sha256(path)
    assert first == original(path) and len(hashed) == 1
    assert file_digests.cached_sha256(path) == first and len(hashed) == 1  # remembered
    stat = path.stat()
    path.write_bytes(b"b" * 1000)  # same size; then restore the old mtime: ctime still moves
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digests.cached_sha256(path) == original(path) != first and len(hashed) == 2
    assert real is None  # the module hashes through sana_edge.manifest, the one hashing function


def test_an_unwritable_cache_only_costs_rehashing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("SANA_EDGE_CACHE", str(cache))
    path = tmp_path / "x.bin"
    path.write_bytes(b"xyz")
    assert file_digests.cached_sha256(path) == sha256_file(path)
