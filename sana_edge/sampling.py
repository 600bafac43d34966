"""The sampler an export asks for, behind one interface: Flow-DPM-Solver with CFG for Sana
(denoising.FlowDenoiser), SCM/TrigFlow with embedded guidance for Sana-Sprint
(sprint.SprintDenoiser); text-to-image or image-to-image; and where its noise comes from.

`Sampler.schedule(...)` checks a request against the model before any work; `initial(...)` and
`run(...)` then do it. `Noise` holds the initial noise and Sprint's per-step noise: given by the
caller (`latents`, `step_noise`, for parity with diffusers) or drawn from one seeded numpy
generator, initial noise first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import img2img
from . import scm_scheduler as scm
from .components import TRANSFORMER
from .denoising import FlowDenoiser
from .errors import UserError
from .sprint import SprintDenoiser


@dataclass(frozen=True)
class Schedule:
    steps: int  # scheduled steps (the run takes steps - start of them)
    start: int = 0  # first step taken (image-to-image skips some)
    times: np.ndarray | None = None  # Sprint: the TrigFlow times from `start` on

    @property
    def noisy_steps(self) -> int:
        """How many per-step noises the run draws (Sprint re-noises after every step but the last)."""
        return 0 if self.times is None else len(self.times) - 2


class Noise:
    """Initial noise of `shape` and `count` per-step noises (each of `shape`)."""

    def __init__(self, shape: tuple, count: int, seed: int | None = None, latents=None, step_noise=None):
        self.shape, self.count = shape, count
        if latents is not None:
            latents = np.asarray(latents, dtype=np.float32)
            if latents.shape != shape:
                raise UserError(f"initial latents have shape {latents.shape}, this run needs {shape}")
        if step_noise is not None:
            step_noise = np.asarray(step_noise, dtype=np.float32)
            wanted = (count, *shape)
            if count == 0:
                raise UserError("this run draws no per-step noise (1 step, or not a Sana-Sprint export); "
                                "drop --step-noise")
            if step_noise.shape != wanted:
                raise UserError(f"--step-noise has shape {step_noise.shape}, this run needs {wanted}: one noise "
                                f"per step after which Sana-Sprint re-noises (steps - 1 = {count})")
        needs_seed = latents is None or (step_noise is None and count > 0)
        if seed is None and needs_seed:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        self.seed = seed if needs_seed else None
        rng = np.random.default_rng(seed) if needs_seed else None
        self.initial = latents if latents is not None else rng.standard_normal(shape, dtype=np.float32)
        self._given = step_noise
        self._rng = rng

    def step(self, k: int) -> np.ndarray:
        if self._given is not None:
            return self._given[k]
        return self._rng.standard_normal(self.shape, dtype=np.float32)


class Sampler:
    """The export's sampler: `schedule` (checks), `initial` (start sample), `run`."""

    def __init__(self, model, scheduler_config: dict, session: Callable, split: bool = False):
        self.model = model
        self.sprint = model.sprint
        # Sprint exports hold the single transformer graph (the caption-K/V split does not cover
        # the guidance embedding); Sana ones either form.
        self.denoiser = (SprintDenoiser(model, scheduler_config, session) if self.sprint
                         else FlowDenoiser(model, scheduler_config, session, split=split))

    def schedule(self, steps: int, negative_prompt: str | None = None, timesteps=None,
                 strength: float | None = None, step_noise=None) -> Schedule:
        """The steps a request takes; refuses what the sampler has no meaning for."""
        if steps < 1:
            raise UserError(f"steps must be at least 1 (got {steps})")
        start = 0 if strength is None else img2img.start_index(steps, strength)
        if not self.sprint:
            for given, option in ((timesteps, "--timesteps"), (step_noise, "--step-noise")):
                if given is not None:
                    raise UserError(f"{option} applies to Sana-Sprint exports; this export samples with "
                                    "Flow-DPM-Solver (drop the option)")
            return Schedule(steps, start)
        if negative_prompt:
            raise UserError("Sana-Sprint is guidance-distilled and takes no negative prompt (it runs without CFG); "
                            "drop --negative-prompt and set the strength with --guidance")
        return Schedule(steps, start, self.denoiser.schedule(steps, timesteps, start))

    def initial(self, noise: np.ndarray, image_latents: np.ndarray | None, schedule: Schedule) -> np.ndarray:
        """The first sample: noise (text-to-image) or the image latents noised to the first step."""
        if self.sprint:
            if image_latents is None:
                return (noise * np.float32(self.denoiser.sigma_data)).astype(np.float32)
            return img2img.trigflow_noised(image_latents, noise, schedule.times[0], self.denoiser.sigma_data)
        if image_latents is None:
            return noise
        return img2img.flow_noised(image_latents, noise, self.denoiser.sigma(schedule.steps, schedule.start))

    def run(self, sample, embeds, mask, schedule: Schedule, guidance_scale: float, on_step=None,
            step_noise: Callable | None = None, extra_feeds: Callable | None = None) -> np.ndarray:
        """Final latents (what the decoder takes, before the VAE scaling)."""
        if self.sprint:
            return self.denoiser.run(sample, embeds, mask, schedule.times, guidance_scale, on_step, step_noise,
                                     extra_feeds)
        return self.denoiser.run(sample, embeds, mask, schedule.steps, guidance_scale, on_step, schedule.start,
                                 extra_feeds)

    def step_feeds(self, sample, embeds, mask, schedule: Schedule, index: int, guidance_scale: float) -> dict:
        """The transformer's inputs at step `index` of `schedule` for `sample` (the sample entering
        that step, as on_step reports them): what evaluation and benchmarks probe the DiT with."""
        if self.sprint:
            model_in, scm_t = scm.model_input(sample, schedule.times[index], self.denoiser.sigma_data)
            guidance = self.denoiser.guidance(guidance_scale, sample.shape[0])
            return self.denoiser.feeds(model_in, embeds, mask, scm_t, guidance)
        return self.denoiser.feeds(sample, embeds, mask, self.denoiser.timesteps(schedule.steps)[schedule.start + index])

    def predict(self, sample, embeds, mask, schedule: Schedule, index: int, guidance_scale: float) -> np.ndarray:
        """The transformer's raw output at step `index` for `sample`, through this export's graph(s)."""
        if self.sprint:
            feeds = self.step_feeds(sample, embeds, mask, schedule, index, guidance_scale)
            return self.denoiser.transformer().run(feeds)[TRANSFORMER.output_names[0]]
        timestep = self.denoiser.timesteps(schedule.steps)[schedule.start + index]
        return self.denoiser.predict(sample, embeds, mask, timestep)

    def negative(self, negative_prompt: str, guidance_scale: float) -> str | None:
        """The negative prompt to encode: none for Sprint, none without CFG (guidance <= 1)."""
        return None if self.sprint or guidance_scale <= 1.0 else negative_prompt
