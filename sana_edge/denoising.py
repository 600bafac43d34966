"""The denoising loop: Flow-DPM-Solver over the exported transformer, with classifier-free
guidance (batch [negative, positive] in one transformer call)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .components import TRANSFORMER
from .scheduler import FlowDPMSolver


class FlowDenoiser:
    """`run(latents, embeds, mask, steps, guidance_scale, on_step)` -> final latents.

    `session(name)` returns the loaded session of a component (the pipeline's)."""

    def __init__(self, model, scheduler_config: dict, session: Callable):
        self.model = model
        self.scheduler_config = scheduler_config
        self._session = session
        FlowDPMSolver.from_diffusers_config(scheduler_config)  # refuse unsupported configs now

    def feeds(self, latents, embeds, mask, timestep) -> dict:
        """The transformer's inputs at one step (CFG: the latents doubled, batch [neg, pos])."""
        model_input = np.concatenate([latents, latents]) if embeds.shape[0] == 2 else latents
        t = np.full(model_input.shape[0], float(timestep) * self.model.timestep_scale, np.float32)
        return {"latents": model_input, "encoder_hidden_states": embeds, "encoder_attention_mask": mask, "timestep": t}

    def velocity(self, output: np.ndarray, guidance_scale: float) -> np.ndarray:
        """The guided velocity from the transformer's output batch."""
        velocity = output.astype(np.float32, copy=False)
        if velocity.shape[0] == 2:
            uncond, cond = velocity[:1], velocity[1:]
            velocity = uncond + guidance_scale * (cond - uncond)
        if self.model.learned_sigma:
            velocity = velocity[:, : self.model.latent_channels]
        return velocity

    def timesteps(self, steps: int) -> np.ndarray:
        return FlowDPMSolver.from_diffusers_config(self.scheduler_config).set_timesteps(steps)

    def run(self, latents, embeds, mask, steps: int, guidance_scale: float, on_step: Callable | None = None):
        """Sample from `latents`; `on_step(done, total, latents)` is called after every step."""
        transformer = self._session(TRANSFORMER.name)
        solver = FlowDPMSolver.from_diffusers_config(self.scheduler_config)
        timesteps = solver.set_timesteps(steps)
        for i, t in enumerate(timesteps):
            output = transformer.run(self.feeds(latents, embeds, mask, t))[TRANSFORMER.output_names[0]]
            latents = solver.step(self.velocity(output, guidance_scale), latents)
            if on_step:
                on_step(i + 1, len(timesteps), latents)
        return latents
