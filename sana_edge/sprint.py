"""Sana-Sprint's denoising loop: SCM/TrigFlow steps over the exported transformer, one call per
step at batch 1 (guidance is distilled into the `guidance` input, there is no CFG batch), as
diffusers' SanaSprintPipeline and SanaSprintImg2ImgPipeline run it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import scm_scheduler as scm
from .components import TRANSFORMER


class SprintDenoiser:
    """`run(sample, embeds, mask, timesteps, guidance_scale, ...)` -> the final x0 (latent space).

    `sample` is already in the sampler's scale (noise x sigma_data for text-to-image, the noised
    image latents for image-to-image); `timesteps` are the TrigFlow times still to run, from
    `schedule`. `session(name)` returns the loaded session of a component (the pipeline's)."""

    def __init__(self, model, scheduler_config: dict, session: Callable):
        self.model = model
        self.config = scm.SCMConfig.from_diffusers(scheduler_config, model.max_timesteps, model.intermediate_timesteps)
        self._session = session

    @property
    def sigma_data(self) -> float:
        return self.config.sigma_data

    def schedule(self, steps: int, timesteps=None, start: int = 0) -> np.ndarray:
        """TrigFlow times of a run of `steps` steps, from index `start` (image-to-image skips the first)."""
        return scm.scm_timesteps(self.config, steps, timesteps)[start:]

    def transformer(self):
        return self._session(TRANSFORMER.name)

    def guidance(self, guidance_scale: float, batch: int) -> np.ndarray:
        """The transformer's guidance input, as diffusers scales it (x guidance_embeds_scale)."""
        return np.full(batch, guidance_scale, np.float32) * np.float32(self.model.guidance_embeds_scale)

    def feeds(self, model_in, embeds, mask, scm_t, guidance) -> dict:
        batch = model_in.shape[0]
        return {"latents": model_in, "encoder_hidden_states": embeds, "encoder_attention_mask": mask,
                "timestep": np.full(batch, scm_t, np.float32), "guidance": guidance}

    def run(self, sample: np.ndarray, embeds, mask, timesteps: np.ndarray, guidance_scale: float,
            on_step: Callable | None = None, step_noise: Callable[[int], np.ndarray] | None = None,
            extra_feeds: Callable[[dict], dict] | None = None) -> np.ndarray:
        """Sample through `timesteps`; `step_noise(k)` gives the standard-normal noise re-added
        after step k (all but the last step); `on_step(done, total, sample)` after every step
        (the next sample, in the sampler's sigma_data scale, as diffusers' step callback sees it);
        `extra_feeds(feeds)` adds inputs (a controlnet's) to each transformer call."""
        transformer = self.transformer()
        guidance = self.guidance(guidance_scale, sample.shape[0])
        total = len(timesteps) - 1
        x0 = sample
        for k in range(total):
            model_in, scm_t = scm.model_input(sample, timesteps[k], self.sigma_data)
            feeds = self.feeds(model_in, embeds, mask, scm_t, guidance)
            if extra_feeds is not None:
                feeds.update(extra_feeds(feeds))
            output = transformer.run(feeds)[TRANSFORMER.output_names[0]]
            velocity = scm.velocity(output, model_in, scm_t, self.sigma_data)
            # The last step's sample is never used (the run returns its x0), so it draws no noise.
            noise = None if k == total - 1 else step_noise(k)
            sample, x0 = scm.step(velocity, sample, timesteps[k], timesteps[k + 1], noise, self.sigma_data)
            if on_step:
                on_step(k + 1, total, sample)
        return (x0 / np.float32(self.sigma_data)).astype(np.float32, copy=False)
