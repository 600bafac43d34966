"""The numpy SCM/TrigFlow sampler equals diffusers' SCMScheduler as SanaSprintPipeline drives it,
step for step (1e-5): schedules for 1-4 steps and custom timesteps, the transformer's input and
timestep transform, the velocity-to-x0 formula and the per-step re-noising."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge.errors import UserError
from sana_edge.scm_scheduler import SCMConfig, scm_timesteps
from tests.family_helpers import TorchSession, fed_randn, noise

CUSTOM = [1.5, 1.1, 0.4, 0.0]


def _reference_schedule(steps, custom=None):
    from diffusers import SCMScheduler

    scheduler = SCMScheduler()
    if custom is not None:
        scheduler.set_timesteps(steps, timesteps=custom, max_timesteps=None, intermediate_timesteps=None)
    else:
        scheduler.set_timesteps(steps, intermediate_timesteps=1.3 if steps == 2 else None)
    return scheduler.timesteps.numpy()


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8])
def test_schedule_matches_diffusers(steps):
    np.testing.assert_allclose(scm_timesteps(SCMConfig(), steps), _reference_schedule(steps), atol=1e-6)


def test_custom_schedule_matches_diffusers():
    np.testing.assert_allclose(scm_timesteps(SCMConfig(), 3, CUSTOM), _reference_schedule(3, CUSTOM), atol=1e-7)


@pytest.mark.parametrize("custom", [[1.5, 0.0], [1.5, 1.6, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [1.0, float("nan"), 0.5, 0]])
def test_bad_custom_schedule_is_refused(custom):
    with pytest.raises(UserError, match="timesteps"):
        scm_timesteps(SCMConfig(), 3, custom)


def _custom_schedule_scheduler(config):
    """SanaSprintPipeline's retrieve_timesteps calls set_timesteps(timesteps=...) without the step
    count, which SCMScheduler requires (diffusers 0.42.1 raises TypeError): this subclass supplies it."""
    from diffusers import SCMScheduler

    class CustomSchedule(SCMScheduler):
        def set_timesteps(self, num_inference_steps=None, timesteps=None, **kwargs):
            steps = len(timesteps) - 1 if num_inference_steps is None else num_inference_steps
            return super().set_timesteps(steps, timesteps=timesteps, **kwargs)

    return CustomSchedule.from_config(config)


def _diffusers_run(pipe, embeds, mask, latents, noises, steps, custom):
    import copy

    import diffusers.schedulers.scheduling_scm as scm_module
    import torch

    if custom:
        pipe = copy.copy(pipe)
        pipe.scheduler = _custom_schedule_scheduler(pipe.scheduler.config)

    seen = []

    def keep(_pipe, _i, _t, tensors):
        seen.append(tensors["latents"].numpy().copy())
        return tensors

    schedule = ({"timesteps": custom, "max_timesteps": None, "intermediate_timesteps": None} if custom
                else {"intermediate_timesteps": 1.3 if steps == 2 else None})
    with fed_randn(noises, scm_module), torch.no_grad():
        final = pipe(prompt_embeds=torch.from_numpy(embeds), prompt_attention_mask=torch.from_numpy(mask),
                     num_inference_steps=steps, height=128, width=96, latents=torch.from_numpy(latents),
                     use_resolution_binning=False, output_type="latent", callback_on_step_end=keep,
                     **schedule).images
    return seen, final.numpy()


@pytest.mark.parametrize("steps,custom", [(1, None), (2, None), (3, None), (4, None), (3, CUSTOM)])
def test_sampler_matches_sprint_pipeline_step_by_step(sprint_pipe, steps, custom):
    from sana_edge.components import TRANSFORMER
    from sana_edge.export.checkpoint import model_values
    from sana_edge.export.wrappers import TransformerWrapper
    from sana_edge.sprint import SprintDenoiser

    model = model_values(sprint_pipe)
    spec = TRANSFORMER.for_model(model)
    session = TorchSession(TransformerWrapper(sprint_pipe, spec).eval(), spec.input_names, "velocity")
    embeds = noise((1, 300, model.caption_channels), seed=1)
    mask = (np.arange(300) < 40).astype(np.int64)[None]
    latents = noise((1, 32, 4, 3), seed=2)
    noises = noise((1, 32, 4, 3), seed=3, count=steps)  # diffusers draws one per step (the last is unused)
    expected_steps, expected = _diffusers_run(sprint_pipe, embeds, mask, latents, noises, steps, custom)

    denoiser = SprintDenoiser(model, dict(sprint_pipe.scheduler.config), lambda name: session)
    ours = []
    final = denoiser.run(latents * np.float32(model.sigma_data), embeds, mask, denoiser.schedule(steps, custom),
                         guidance_scale=4.5, on_step=lambda done, total, sample: ours.append(sample),
                         step_noise=lambda k: noises[k])
    assert len(ours) == len(expected_steps) == steps
    for got, want in zip(ours, expected_steps):
        assert np.max(np.abs(got - want)) <= 1e-5
    assert np.max(np.abs(final - expected)) <= 1e-5
    assert np.std(final) > 0.1
