"""Cached optimized graphs: written by the first session of a verified export, loaded (without
re-optimizing) by the next, the same outputs, never used for an unverified export."""

from __future__ import annotations

import numpy as np

from sana_edge.backends import ort_cache
from sana_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from sana_edge.components import DECODER, sample_inputs
from sana_edge.manifest import load_manifest


def _decode(session, manifest):
    feeds = sample_inputs(DECODER, {**manifest.model.dims(), "batch": 1, "latent_height": 2, "latent_width": 3}, seed=1)
    return session.run(feeds)["image"]


def test_first_session_saves_the_optimized_graph_and_the_next_loads_it(tiny_export, tmp_path, monkeypatch):
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path))
    manifest = load_manifest(tiny_export)
    backend = OnnxRuntimeBackend(["CPUExecutionProvider"])
    first = backend.load_component(manifest, DECODER.name)
    entries = list(ort_cache.cache_dir().iterdir())
    assert len(entries) == 1 and (entries[0] / ort_cache.GRAPH_NAME).is_file()
    loaded = []
    real = ort_cache.create_session

    def spy(path, digest, options, providers):
        session = real(path, digest, options, providers)
        loaded.append(options.graph_optimization_level)
        return session

    monkeypatch.setattr(ort_cache, "create_session", spy)
    second = backend.load_component(manifest, DECODER.name)
    import onnxruntime as ort

    assert loaded == [ort.GraphOptimizationLevel.ORT_DISABLE_ALL]  # the cached copy, not optimized again
    np.testing.assert_allclose(_decode(second, manifest), _decode(first, manifest), rtol=1e-5, atol=1e-6)


def test_unverified_exports_and_damaged_entries(tiny_export, tmp_path, monkeypatch):
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path))
    backend = OnnxRuntimeBackend(["CPUExecutionProvider"])
    unverified = load_manifest(tiny_export, verify=False)
    backend.load_component(unverified, DECODER.name)
    assert not ort_cache.cache_dir().exists() or not any(ort_cache.cache_dir().iterdir())
    manifest = load_manifest(tiny_export)
    reference = _decode(backend.load_component(manifest, DECODER.name), manifest)
    entry = next(ort_cache.cache_dir().iterdir())
    (entry / ort_cache.GRAPH_NAME).write_bytes(b"garbage")  # a damaged entry is dropped and rebuilt
    again = backend.load_component(manifest, DECODER.name)
    np.testing.assert_allclose(_decode(again, manifest), reference, rtol=1e-5, atol=1e-6)
    assert (entry / ort_cache.GRAPH_NAME).stat().st_size > 100
