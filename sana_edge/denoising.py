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

    def predict(self, latents, embeds, mask, timestep, caption: dict | None = None,
                extra_feeds: Callable[[dict], dict] | None = None) -> np.ndarray:
        """The transformer's raw output (velocity, batch as fed) at one step."""
        feeds = self.feeds(latents, embeds, mask, timestep, caption)
        if extra_feeds is not None:
            feeds.update(extra_feeds(feeds))
        outputs = self._session(self.graph.name).run(feeds)
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

    def _bound_predictor(self, embeds, mask):
        """With a session that offers IO binding (ort-cuda): the caption goes to the device once
        and each step moves only latents, timestep and the output; None otherwise."""
        step = self._session(self.graph.name)
        if not hasattr(step, "bound_steps"):
            return None
        bound = step.bound_steps(self._session(CAPTION_KV.name) if self.split else None)
        bound.set_caption(embeds, mask)

        def predict(latents, timestep):
            feeds = self.feeds(latents, embeds, mask, timestep, caption={})
            return bound.run(feeds["latents"], feeds["timestep"])

        return predict

    def timesteps(self, steps: int) -> np.ndarray:
        return FlowDPMSolver.from_diffusers_config(self.scheduler_config).set_timesteps(steps)

    def sigma(self, steps: int, index: int) -> np.float32:
        """The noise level of scheduled step `index` of `steps` (where image-to-image starts)."""
        solver = FlowDPMSolver.from_diffusers_config(self.scheduler_config)
        solver.set_timesteps(steps)
        return solver.sigmas[index]

    def run(self, latents, embeds, mask, steps: int, guidance_scale: float, on_step: Callable | None = None,
            start: int = 0, extra_feeds: Callable[[dict], dict] | None = None):
        """Sample from `latents`; `on_step(done, total, latents)` is called after every step.
        `start` skips the first scheduled steps (image-to-image); `extra_feeds(feeds)` adds inputs
        (a controlnet's residuals) to each transformer call."""
        solver = FlowDPMSolver.from_diffusers_config(self.scheduler_config)
        timesteps = solver.set_timesteps(steps)
        solver.set_begin_index(start)
        # IO binding (ort-cuda) moves only latents and timestep; a controlnet's residuals need the plain feeds
        predict = self._bound_predictor(embeds, mask) if extra_feeds is None else None
        if predict is None:
            caption = self.caption(embeds, mask)
            predict = lambda latents, t: self.predict(latents, embeds, mask, t, caption, extra_feeds)  # noqa: E731
        for i, t in enumerate(timesteps[start:]):
            output = predict(latents, t)
            latents = solver.step(self.velocity(output, guidance_scale), latents)
            if on_step:
                on_step(i + 1, len(timesteps) - start, latents)
        return latents
