"""Every published SANA checkpoint diffusers ships, at tiny width with its real non-width settings
(export/variants.py): it exports and `SanaEdgePipeline` matches its diffusers pipeline within
2/255. The positional-embedding variants (2K, 4K) are also checked at their native latent size,
where diffusers uses its stored table and the graph computes the embedding."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.export.variants import VARIANTS
from tests.family_helpers import fed_randn, noise, pixels

PROMPT, NEGATIVE = "a watercolor landscape of mountains", "blurry"
HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def variant_exports(diffusers_pipe, tmp_path_factory, request):
    """name -> (export folder, diffusers pipeline), built on first use (sprint-0.6b is the session's
    Sprint fixture, the same checkpoint)."""
    from sana_edge.export.checkpoint import load_sana_pipeline
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.export.tiny import write_tiny_checkpoint

    built = {}
    built["sprint-0.6b"] = (request.getfixturevalue("sprint_export"), request.getfixturevalue("sprint_pipe"))

    def get(name):
        if name not in built:
            root = tmp_path_factory.mktemp(name)
            checkpoint = write_tiny_checkpoint(root / "checkpoint", variant=name, base=diffusers_pipe)
            export = export_checkpoint(ExportOptions(str(checkpoint), root / "export"), log=lambda _: None)
            built[name] = (export, load_sana_pipeline(checkpoint))
        return built[name]

    return get


def _reference(pipe, sprint, latents, step_noise):
    import diffusers.schedulers.scheduling_scm as scm_module
    import torch

    common = dict(height=HEIGHT, width=WIDTH, latents=torch.from_numpy(latents), use_resolution_binning=False)
    with torch.no_grad():
        if not sprint:
            return pixels(pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, **common).images[0])
        with fed_randn([*step_noise, np.zeros_like(latents)], scm_module):
            return pixels(pipe(PROMPT, num_inference_steps=2, **common).images[0])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_exports_and_matches_diffusers(variant_exports, name):
    export, reference = variant_exports(name)
    variant = VARIANTS[name]
    pipe = SanaEdgePipeline.from_export(export)
    model = pipe.manifest.model
    assert (model.pipeline == "sprint") == variant.sprint and model.default_size == variant.size
    assert model.flow_shift == (3.0 if variant.sprint else variant.flow_shift)
    shape = (1, 32, HEIGHT // 32, WIDTH // 32)
    latents, step_noise = noise(shape, seed=1), noise(shape, seed=2, count=1)
    expected = _reference(reference, variant.sprint, latents, step_noise)
    kwargs = dict(step_noise=step_noise) if variant.sprint else dict(negative_prompt=NEGATIVE, steps=4)
    got = pixels(pipe(PROMPT, height=HEIGHT, width=WIDTH, latents=latents, **kwargs))
    assert np.abs(got - expected).max() <= 2
    assert got.std() > 1


def _velocity(export, feeds, session_class):
    """The exported DiT's velocity: one transformer graph, or the split pair (caption K/V, then the step)."""
    if (export / "transformer.onnx").is_file():
        return session_class(export / "transformer.onnx", ["CPUExecutionProvider"]).run(feeds)["velocity"]
    caption = session_class(export / "caption_kv.onnx", ["CPUExecutionProvider"])
    kv = caption.run({name: feeds[name] for name in caption.input_names})
    step = session_class(export / "transformer_step.onnx", ["CPUExecutionProvider"])
    return step.run({name: kv[name] if name in kv else feeds[name] for name in step.input_names})["velocity"]


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.interpolation_scale])
def test_positional_embedding_at_native_size(variant_exports, name):
    import torch

    from sana_edge.backends.onnxruntime_backend import OrtSession

    export, reference = variant_exports(name)
    side = VARIANTS[name].size // 32
    rng = np.random.default_rng(0)
    feeds = {"latents": rng.standard_normal((1, 32, side, side)).astype(np.float32),
             "encoder_hidden_states": rng.standard_normal((1, 300, 32)).astype(np.float32),
             "encoder_attention_mask": np.ones((1, 300), np.int64), "timestep": np.array([500.0], np.float32)}
    got = _velocity(export, feeds, OrtSession)
    with torch.no_grad():
        want = reference.transformer(torch.from_numpy(feeds["latents"]),
                                     encoder_hidden_states=torch.from_numpy(feeds["encoder_hidden_states"]),
                                     encoder_attention_mask=torch.from_numpy(feeds["encoder_attention_mask"]),
                                     timestep=torch.from_numpy(feeds["timestep"]), return_dict=False)[0].numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
