"""ControlNet: `sana-edge export CKPT --controlnet DIR` exports it as its own validated component,
and `sana-edge run --control-image` matches diffusers' SanaControlNetPipeline; without a control
image the same export equals SanaPipeline (the transformer adds zero residuals)."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.cli import main
from sana_edge.manifest import load_manifest
from tests.family_helpers import noise, pixels

PROMPT, NEGATIVE = "a large blue circle in the centre", "blurry"


def _control_image(path, height, width):
    from PIL import Image

    edges = np.zeros((height, width, 3), np.uint8)
    edges[height // 4: 3 * height // 4, width // 3] = 255  # an edge map: a vertical and a horizontal line
    edges[height // 2, width // 5: 4 * width // 5] = 255
    Image.fromarray(edges).save(path)
    return Image.open(path).convert("RGB")


def _reference(diffusers_pipe, controlnet_dir, image, latents, scale, steps=5):
    import torch
    from diffusers import SanaControlNetModel, SanaControlNetPipeline

    parts = {k: getattr(diffusers_pipe, k) for k in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")}
    pipe = SanaControlNetPipeline(**parts, controlnet=SanaControlNetModel.from_pretrained(controlnet_dir).eval())
    with torch.no_grad():
        result = pipe(PROMPT, negative_prompt=NEGATIVE, control_image=image, controlnet_conditioning_scale=scale,
                      height=image.height, width=image.width, num_inference_steps=steps,
                      latents=torch.from_numpy(latents), use_resolution_binning=False).images[0]
    return pixels(result)


def test_controlnet_is_its_own_validated_component(controlnet_export):
    manifest = load_manifest(controlnet_export)
    assert manifest.model.controlnet_layers == 1
    entry = manifest.components["controlnet"]
    assert all(v["cosine"] >= 0.9999 for v in entry["validation"]) and entry["linear_attention_eps_constants"] >= 1
    inputs = [i["name"] for i in manifest.components["transformer"]["inputs"]]
    assert inputs[-1] == "controlnet_block_samples" and "guidance" not in inputs


@pytest.mark.parametrize("height,width,scale", [(128, 128, 1.0), (96, 160, 0.7)])
def test_cli_control_image_matches_diffusers(controlnet_export, controlnet_dir, diffusers_pipe, tmp_path,
                                             height, width, scale):
    from PIL import Image

    image = _control_image(tmp_path / "edges.png", height, width)
    latents = noise((1, 32, height // 32, width // 32), seed=3)
    np.save(tmp_path / "noise.npy", latents)
    out = tmp_path / "out.png"
    assert main(["run", PROMPT, "-m", str(controlnet_export), "-o", str(out), "--steps", "5", "--negative-prompt",
                 NEGATIVE, "--control-image", str(tmp_path / "edges.png"), "--control-scale", str(scale),
                 "--latents", str(tmp_path / "noise.npy")]) == 0
    expected = _reference(diffusers_pipe, controlnet_dir, image, latents, scale)
    with Image.open(out) as result:
        got = pixels(result)
        assert result.text["sana-edge:control_scale"] == str(scale)
    assert got.shape == (height, width, 3)
    assert np.abs(got - expected).max() <= 2
    plain = SanaEdgePipeline.from_export(controlnet_export)(PROMPT, negative_prompt=NEGATIVE, height=height,
                                                            width=width, steps=5, latents=latents)
    assert np.abs(pixels(plain) - got).max() > 8  # the control image changes the picture


def test_without_control_image_it_is_sana(controlnet_export, tiny_export):
    latents = noise((1, 32, 4, 4), seed=4)
    a = SanaEdgePipeline.from_export(controlnet_export).generate(PROMPT, height=128, width=128, steps=4, latents=latents)
    b = SanaEdgePipeline.from_export(tiny_export).generate(PROMPT, height=128, width=128, steps=4, latents=latents)
    np.testing.assert_allclose(a.latents, b.latents, atol=1e-5)
