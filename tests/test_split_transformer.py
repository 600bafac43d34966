"""The transformer split into caption K/V (once per generation) + step graphs computes what the
single graph computes; exports with the single graph (older ones, or `split_transformer=False`)
still run."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.components import SINGLE_GRAPH, TRANSFORMER, sample_inputs
from sana_edge.export.exporter import ExportOptions, export_checkpoint
from sana_edge.manifest import load_manifest
from sana_edge.metrics import cosine


@pytest.fixture(scope="module")
def single_export(tiny_single_export):
    return tiny_single_export


def test_single_graph_export_holds_the_one_transformer(single_export):
    assert tuple(load_manifest(single_export).components) == SINGLE_GRAPH


@pytest.mark.parametrize("binding", TRANSFORMER.validation_shapes)
def test_caption_kv_and_step_equal_the_single_graph(tiny_export, single_export, binding):
    split, single = (SanaEdgePipeline.from_export(p) for p in (tiny_export, single_export))
    assert split.denoiser.split and not single.denoiser.split
    feeds = sample_inputs(TRANSFORMER, {**split.manifest.model.dims(), **binding}, seed=7)
    embeds, mask = feeds["encoder_hidden_states"], feeds["encoder_attention_mask"]
    latents = feeds["latents"][:1]
    outputs = [p.denoiser.predict(latents, embeds, mask, 617) for p in (split, single)]
    assert outputs[0].shape == outputs[1].shape
    assert cosine(*outputs) >= 0.9999
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)


def test_split_and_single_exports_draw_the_same_image(tiny_export, single_export):
    latents = np.random.default_rng(3).standard_normal((1, 32, 4, 6)).astype(np.float32)
    images = [np.asarray(SanaEdgePipeline.from_export(p)("a red fox", height=128, width=192, steps=6, latents=latents),
                         dtype=int) for p in (tiny_export, single_export)]
    assert np.abs(images[0] - images[1]).max() <= 1


def test_caption_graph_runs_once_per_generation(tiny_export, monkeypatch):
    pipe = SanaEdgePipeline.from_export(tiny_export)
    calls = []
    original = pipe.session

    def counting(name, **kwargs):
        session = original(name, **kwargs)
        if not hasattr(session, "counted"):  # the pipeline hands out the same session every step
            run = session.run
            session.run = lambda feeds: calls.append(name) or run(feeds)
            session.counted = True
        return session

    monkeypatch.setattr(pipe.denoiser, "_session", counting)
    pipe.generate("a fox", height=64, width=64, steps=5, seed=0)
    assert calls.count("caption_kv") == 1 and calls.count("transformer_step") == 5
