"""The denoising loop: Flow-DPM-Solver over the exported transformer, with classifier-free
guidance (batch [negative, positive] in one transformer call).

An export holds the transformer as one graph, or split (export/split_transformer.py): then the
caption's cross-attention K/V are computed once per generation by `caption_kv` and fed to
`transformer_step` at every step, instead of being recomputed by each step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .components import CAPTION_KV, TRANSFORMER, TRANSFORMER_STEP
from .scheduler import FlowDPMSolver


class FlowDenoiser:
    """`run(latents, embeds, mask, steps, guidance_scale, on_step)` -> final latents.

    `session(name)` returns the loaded session of a component (the pipeline's)."""

    def __init__(self, model, scheduler_config: dict, session: Callable, split: bool = False):
        self.model = model
        self.scheduler_config = scheduler_config
        self._session = session
        self.split = split
        self.graph = TRANSFORMER_STEP if split else TRANSFORMER
        FlowDPMSolver.from_diffusers_config(scheduler_config)  # refuse unsupported configs now

    def caption(self, embeds: np.ndarray, mask: np.ndarray) -> dict:
        """What every step is fed about the caption: its embeddings, or with the split graphs
        its cross-attention K/V (computed here, once)."""
        if not self.split:
            return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}
        kv = self._session(CAPTION_KV.name).run({"encoder_hidden_states": embeds})
        return {**kv, "encoder_attention_mask": mask}

    def feeds(self, latents, embeds, mask, timestep, caption: dict | None = None) -> dict:
        """The transformer's inputs at one step (CFG: the latents doubled, batch [neg, pos])."""
        model_input = np.concatenate([latents, latents]) if embeds.shape[0] == 2 else latents
        t = np.full(model_input.shape[0], float(timestep) * self.model.timestep_scale, np.float32)
        caption = self.caption(embeds, mask) if caption is None else caption
        return {"latents": model_input, "timestep": t, **caption}

    def predict(self, latents, embeds, mask, timestep, caption: dict | None = None) -> np.ndarray:
        """The transformer's raw output (velocity, batch as fed) at one step."""
        outputs = self._session(self.graph.name).run(self.feeds(latents, embeds, mask, timestep, caption))
        return outputs[self.graph.output_names[0]]

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
        solver = FlowDPMSolver.from_diffusers_config(self.scheduler_config)
        timesteps = solver.set_timesteps(steps)
        caption = self.caption(embeds, mask)
        for i, t in enumerate(timesteps):
            output = self.predict(latents, embeds, mask, t, caption)
            latents = solver.step(self.velocity(output, guidance_scale), latents)
            if on_step:
                on_step(i + 1, len(timesteps), latents)
        return latents
