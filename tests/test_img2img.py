"""Image-to-image and the VAE encoder: the exported encoder is validated like the other graphs;
Sana-Sprint matches SanaSprintImg2ImgPipeline; Sana (diffusers 0.42 has no such pipeline) matches
a reference assembled from diffusers' own parts (AutoencoderDC.encode, the scheduler's sigmas and
add_noise, the transformer with CFG); large inputs encode in tiles."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.manifest import load_manifest
from tests.family_helpers import fed_randn, noise, pixels

PROMPT, NEGATIVE = "a small green triangle at the top left", "blurry"


def _input_image(path, height, width, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)  # smooth, image-like
    image.save(path)
    return image


def test_encoder_is_a_validated_component(tiny_export):
    entry = load_manifest(tiny_export).components["vae_encoder"]
    assert len(entry["validation"]) >= 2 and all(v["cosine"] >= 0.9999 and v["finite"] for v in entry["validation"])
    assert entry["linear_attention_eps_constants"] >= 1
    assert [i["name"] for i in entry["inputs"]] == ["image"]


@pytest.mark.parametrize("steps,strength,height,width", [(4, 0.6, 128, 96), (2, 0.6, 96, 96), (4, 1.0, 64, 128)])
def test_sprint_img2img_matches_diffusers(sprint_export, sprint_pipe, tmp_path, steps, strength, height, width):
    import diffusers.pipelines.sana.pipeline_sana_sprint_img2img as img2img_module
    import diffusers.schedulers.scheduling_scm as scm_module
    import torch
    from diffusers import SanaSprintImg2ImgPipeline

    image = _input_image(tmp_path / "in.png", height, width)
    shape = (1, 32, height // 32, width // 32)
    first = noise(shape, seed=1)
    start = int(max(steps - min(steps * strength, steps), 0))
    step_noise = noise(shape, seed=2, count=steps - start - 1)
    reference = SanaSprintImg2ImgPipeline(**{k: getattr(sprint_pipe, k) for k in
                                             ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")})
    kwargs = {} if steps == 2 else {"intermediate_timesteps": None}
    with fed_randn([first, *step_noise, np.zeros(shape, np.float32)], img2img_module, scm_module) as queue, torch.no_grad():
        expected = reference(PROMPT, image=image, strength=strength, num_inference_steps=steps, height=height,
                             width=width, use_resolution_binning=False, **kwargs).images[0]
    assert not queue
    pipe = SanaEdgePipeline.from_export(sprint_export)
    got = pipe.generate(PROMPT, image=tmp_path / "in.png", strength=strength, steps=steps, latents=first,
                        step_noise=step_noise if len(step_noise) else None)
    assert got.image.size == (width, height)
    assert np.abs(pixels(got.image) - pixels(expected)).max() <= 2
    assert set(got.timings) == {"text_encoder", "encode", "denoise", "decode"}


def _sana_img2img_reference(pipe, image, strength, steps, guidance, first):
    """Flow-matching img2img (as diffusers' SD3/Flux img2img pipelines) from diffusers' Sana parts."""
    import inspect

    import torch
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline

    chi = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
    with torch.no_grad():
        embeds, mask, negative, negative_mask = pipe.encode_prompt(
            PROMPT, True, negative_prompt=NEGATIVE, complex_human_instruction=chi)
        embeds, mask = torch.cat([negative, embeds]), torch.cat([negative_mask, mask])
        scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(steps)
        start = int(max(steps - min(steps * strength, steps), 0))
        timesteps = scheduler.timesteps[start:]
        scheduler.set_begin_index(start)
        pixels_in = pipe.image_processor.preprocess(image, height=image.height, width=image.width)
        image_latents = pipe.vae.encode(pixels_in).latent * pipe.vae.config.scaling_factor
        latents = scheduler.add_noise(image_latents, torch.from_numpy(first), timesteps[:1])
        for t in timesteps:
            model_in = torch.cat([latents] * 2)
            velocity = pipe.transformer(model_in, encoder_hidden_states=embeds, encoder_attention_mask=mask,
                                        timestep=t.expand(2).float() * pipe.transformer.config.timestep_scale,
                                        return_dict=False)[0]
            uncond, cond = velocity.chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents, return_dict=False)[0]
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


@pytest.mark.parametrize("steps,strength", [(6, 0.6), (5, 0.3), (4, 1.0)])
def test_sana_img2img_matches_reference_from_diffusers_parts(tiny_export, diffusers_pipe, tmp_path, steps, strength):
    image = _input_image(tmp_path / "in.png", 96, 128, seed=4)
    first = noise((1, 32, 3, 4), seed=5)
    expected = _sana_img2img_reference(diffusers_pipe, image, strength, steps, 4.5, first)
    got = SanaEdgePipeline.from_export(tiny_export).generate(
        PROMPT, negative_prompt=NEGATIVE, image=image, strength=strength, steps=steps, guidance_scale=4.5,
        latents=first)
    assert np.abs(pixels(got.image) - pixels(expected)).max() <= 2


def test_strength_changes_how_much_of_the_image_survives(tiny_export, tmp_path):
    pipe = SanaEdgePipeline.from_export(tiny_export)
    image = _input_image(tmp_path / "in.png", 128, 128, seed=6)
    latents = {s: pipe.generate(PROMPT, image=image, strength=s, steps=10, seed=0, output_type="latent").latents
               for s in (0.2, 0.9)}
    encoded = pipe.image_encoder.encode(pipe_pixels(image))
    assert np.abs(latents[0.2] - encoded).mean() < np.abs(latents[0.9] - encoded).mean()


def pipe_pixels(image):
    from sana_edge.image_encoding import load_image

    return load_image(image)


def test_large_input_encodes_in_tiles(tiny_export, tmp_path):
    from sana_edge.tiling import default_overlap, encode_tiled, tile_starts

    pipe = SanaEdgePipeline.from_export(tiny_export)
    image = pipe_pixels(_input_image(tmp_path / "big.png", 512, 384, seed=7))
    whole = pipe.image_encoder.encode(image)
    calls = []
    tiled = pipe.image_encoder.encode(image, tile=6)  # 192 px tiles
    assert tiled.shape == whole.shape == (1, 32, 16, 12)
    # the tiles cover the image: each latent is an overlap-weighted mean of tile encodings
    assert np.abs(tiled - whole).mean() < 0.5 * np.abs(whole).mean()
    session = pipe.session("vae_encoder")
    encode_tiled(lambda x: calls.append(x.shape) or session.run({"image": x})["latent"], image, 6, 32)
    tiles = len(tile_starts(16, 6, default_overlap(6))) * len(tile_starts(12, 6, default_overlap(6)))
    assert len(calls) == tiles == 9 and all(c == (1, 3, 192, 192) for c in calls)
    plan = pipe.plan(4096, 4096, encode=True)
    small = SanaEdgePipeline.from_export(tiny_export, max_memory=plan.stage_bytes["vae_encoder"] // 4 + plan.base)
    tight = small.plan(4096, 4096, encode=True)
    assert plan.encoder_tile is None and tight.encoder_tile is not None
    assert "encoder tiles of" in tight.describe()


def test_export_without_encoder_draws_text_to_image_and_refuses_img2img(tiny_export, tmp_path):
    """Exports made before img2img (and optimum imports) have no vae_encoder: they still load and
    draw; asking them for img2img names the missing graph and the re-export."""
    import json
    import shutil

    from sana_edge.errors import UserError

    old = tmp_path / "old"
    shutil.copytree(tiny_export, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / manifest["components"].pop("vae_encoder")["file"]).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    pipe = SanaEdgePipeline.from_export(old)
    assert pipe.generate(PROMPT, steps=2, seed=0, height=64, width=64).image.size == (64, 64)
    with pytest.raises(UserError, match="needs the VAE encoder, which this export .* lacks; re-export"):
        pipe.generate(PROMPT, image=_input_image(tmp_path / "in.png", 64, 64), strength=0.5, steps=2, seed=0)
