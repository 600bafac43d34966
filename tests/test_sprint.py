"""Sana-Sprint end to end: `sana-edge run` on a tiny Sprint export, with torch unimportable, equals
diffusers' SanaSprintPipeline within 2/255 given the same latents (and, from 2 steps on, the same
per-step noise); the model's defaults come from the manifest."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sana_edge.cli import main
from tests.family_helpers import fed_randn, noise, pixels

PROMPT = "a red fox sitting in fresh snow"
# (steps or None for the model's default, height, width)
CASES = [(1, 128, 128), (1, 96, 160), (None, 128, 128), (2, 160, 96), (4, 128, 128), (4, 96, 128)]


def _sprint_reference(pipe, steps, height, width, latents, step_noise, guidance=4.5):
    import diffusers.schedulers.scheduling_scm as scm_module
    import torch

    count = steps or 2
    extra = np.zeros((1, *latents.shape), np.float32)  # diffusers draws one more (unused: sin 0 = 0)
    kwargs = {} if steps in (None, 2) else {"intermediate_timesteps": None}
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    with fed_randn(list(step_noise) + list(extra), scm_module) as queue, torch.no_grad():
        image = pipe(PROMPT, height=height, width=width, guidance_scale=guidance, latents=torch.from_numpy(latents),
                     use_resolution_binning=False, **kwargs).images[0]
    assert not queue and count >= 1
    return pixels(image)


def _case_files(tmp_path, index, steps, height, width):
    shape = (1, 32, height // 32, width // 32)
    latents, step_noise = noise(shape, seed=10 + index), noise(shape, seed=20 + index, count=(steps or 2) - 1)
    np.save(tmp_path / f"latents{index}.npy", latents)
    np.save(tmp_path / f"noise{index}.npy", step_noise)
    return latents, step_noise


def test_cli_matches_sprint_pipeline_without_torch(sprint_export, sprint_pipe, tmp_path):
    runs = []
    for index, (steps, height, width) in enumerate(CASES):
        _case_files(tmp_path, index, steps, height, width)
        argv = ["run", PROMPT, "-m", str(sprint_export), "-o", str(tmp_path / f"out{index}.png"),
                "--height", str(height), "--width", str(width), "--latents", str(tmp_path / f"latents{index}.npy")]
        if steps is not None:
            argv += ["--steps", str(steps)]
        if (steps or 2) > 1:
            argv += ["--step-noise", str(tmp_path / f"noise{index}.npy")]
        runs.append(argv)
    script = textwrap.dedent(f"""
        import json, sys
        for blocked in ("torch", "diffusers", "transformers", "onnx"):
            sys.modules[blocked] = None
        from sana_edge.cli import main
        codes = [main(argv) for argv in json.loads({json.dumps(json.dumps(runs))})]
        loaded = [m for m in ("torch", "diffusers", "transformers") if sys.modules.get(m) is not None]
        print(json.dumps({{"codes": codes, "loaded": loaded}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0] * len(CASES), "loaded": []}, done.stderr

    from PIL import Image

    for index, (steps, height, width) in enumerate(CASES):
        latents, step_noise = _case_files(tmp_path, index, steps, height, width)
        expected = _sprint_reference(sprint_pipe, steps, height, width, latents, step_noise)
        with Image.open(tmp_path / f"out{index}.png") as image:
            got, text = pixels(image), image.text
        assert got.shape == (height, width, 3)
        assert np.abs(got - expected).max() <= 2, (steps, height, width)
        assert got.std() > 1
        assert text["sana-edge:steps"] == str(steps or 2) and text["sana-edge:guidance"] == "4.5"


def test_step_noise_changes_the_image_and_seeds_reproduce(sprint_export):
    from sana_edge import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(sprint_export)
    shape = (1, 32, 4, 4)
    latents = noise(shape, seed=1)
    a = pipe.generate(PROMPT, height=128, width=128, steps=2, latents=latents, step_noise=noise(shape, 2, count=1))
    b = pipe.generate(PROMPT, height=128, width=128, steps=2, latents=latents, step_noise=noise(shape, 3, count=1))
    assert np.abs(a.latents - b.latents).max() > 1e-2  # 2-step Sprint re-noises between its steps
    c = pipe.generate(PROMPT, height=128, width=128, seed=5)
    d = pipe.generate(PROMPT, height=128, width=128, seed=5)
    assert np.array_equal(c.latents, d.latents) and c.seed == 5
    assert set(c.timings) == {"text_encoder", "denoise", "decode"}


def test_defaults_come_from_the_manifest(sprint_export, tiny_export, tmp_path):
    from PIL import Image

    from sana_edge.manifest import load_manifest

    sprint, sana = load_manifest(sprint_export).model, load_manifest(tiny_export).model
    assert (sprint.pipeline, sprint.default_steps, sprint.default_guidance) == ("sprint", 2, 4.5)
    assert (sana.pipeline, sana.default_steps, sana.default_guidance) == ("sana", 20, 4.5)
    assert sprint.guidance_embeds and sprint.sigma_data == 0.5 and sprint.max_timesteps == pytest.approx(1.5708)
    for export, argv, steps, guidance in ((tiny_export, [], "20", "4.5"), (sprint_export, ["--steps", "3", "--guidance", "3.0"], "3", "3.0")):
        out = tmp_path / f"{export.name}.png"
        assert main(["run", "a cat", "-m", str(export), "-o", str(out), "--height", "64", "--width", "64",
                     "--seed", "0", *argv]) == 0
        with Image.open(out) as image:
            assert (image.text["sana-edge:steps"], image.text["sana-edge:guidance"]) == (steps, guidance)
