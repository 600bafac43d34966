"""End to end: SanaEdgePipeline over the exported graphs equals diffusers' SanaPipeline."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.cli import main

PROMPT, NEGATIVE = "a red fox sitting in fresh snow", "blurry"


def _reference_image(pipe, latents, height, width, steps=6, guidance=4.5):
    import torch

    image = pipe(
        PROMPT, negative_prompt=NEGATIVE, height=height, width=width, num_inference_steps=steps,
        guidance_scale=guidance, latents=torch.from_numpy(latents), use_resolution_binning=False,
        output_type="pil",
    ).images[0]
    return np.asarray(image).astype(np.int16)


def _latents(height, width, seed=3):
    return np.random.default_rng(seed).standard_normal((1, 32, height // 32, width // 32)).astype(np.float32)


@pytest.mark.parametrize("height,width", [(256, 256), (192, 320)])
@pytest.mark.parametrize("guidance", [4.5, 1.0])
def test_matches_diffusers(tiny_export, diffusers_pipe, height, width, guidance):
    latents = _latents(height, width)
    expected = _reference_image(diffusers_pipe, latents, height, width, guidance=guidance)
    pipe = SanaEdgePipeline.from_export(tiny_export)
    image = pipe(PROMPT, negative_prompt=NEGATIVE, height=height, width=width, steps=6,
                 guidance_scale=guidance, latents=latents)
    got = np.asarray(image).astype(np.int16)
    assert got.shape == (height, width, 3)
    assert np.abs(got - expected).max() <= 2
    assert got.std() > 1  # a real image, not a constant


def test_cli_matches_diffusers(tiny_export, diffusers_pipe, tmp_path):
    from PIL import Image

    latents = _latents(256, 192, seed=5)
    np.save(tmp_path / "noise.npy", latents)
    out = tmp_path / "fox.png"
    code = main(["run", PROMPT, "--model", str(tiny_export), "-o", str(out), "--steps", "6",
                 "--negative-prompt", NEGATIVE, "--height", "256", "--width", "192",
                 "--latents", str(tmp_path / "noise.npy")])
    assert code == 0
    expected = _reference_image(diffusers_pipe, latents, 256, 192)
    with Image.open(out) as image:
        got = np.asarray(image).astype(np.int16)
        text = image.text
    assert np.abs(got - expected).max() <= 2
    assert text["sana-edge:prompt"] == PROMPT and text["sana-edge:steps"] == "6"
    assert text["sana-edge:size"] == "192x256" and text["sana-edge:precision"] == "fp32"
    assert text["sana-edge:guidance"] == "4.5" and "sana-edge:seed" in text


def test_seed_is_reproducible(tiny_export):
    pipe = SanaEdgePipeline.from_export(tiny_export)
    a = pipe.generate("a cat", height=128, width=128, steps=3, seed=7)
    b = pipe.generate("a cat", height=128, width=128, steps=3, seed=7)
    c = pipe.generate("a cat", height=128, width=128, steps=3, seed=8)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(a.latents, c.latents)
    assert set(a.timings) == {"text_encoder", "denoise", "decode"}
