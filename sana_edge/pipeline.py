"""SanaEdgePipeline: prompt -> image over exported graphs, numpy on the hot path, no torch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import get_backend
from .checks import check_image_side
from .components import DECODER, STAGES, TEXT_ENCODER, TRANSFORMER, TRANSFORMER_STEP
from .denoising import FlowDenoiser
from .errors import UserError
from .image_io import to_pil
from .manifest import Manifest, load_manifest
from .memory import PeakMemory
from .planner import MemoryPlan, plan_memory
from .prompt import PromptTokenizer
from .text_encoding import PromptEncoder
from .tiling import decode_tiled


@dataclass
class GenerationResult:
    image: object  # PIL.Image.Image (None for output_type="latent")
    latents: np.ndarray  # final latents, before decoding
    seed: int | None
    timings: dict = field(default_factory=dict)  # stage -> seconds
    memory: dict = field(default_factory=dict)  # stage -> peak bytes (RSS on CPU, device memory on GPU)
    plan: MemoryPlan | None = None


class SanaEdgePipeline:
    def __init__(self, manifest: Manifest, backend, max_memory: int | None = None, keep_loaded: bool | None = None):
        """`keep_loaded`: None (default) keeps sessions loaded across calls when the memory plan fits
        them all, True asks for it (noted when it does not fit), False releases each stage after use."""
        self.manifest = manifest
        self.backend = backend
        self.max_memory, self.keep_loaded = max_memory, keep_loaded
        model = manifest.model
        self.tokenizer = PromptTokenizer(manifest.tokenizer_path, model.complex_human_instruction,
                                         model.max_sequence_length)
        self.scheduler_config = manifest.scheduler_config
        self.prompt_encoder = PromptEncoder(self.tokenizer, self.session)
        self.denoiser = FlowDenoiser(model, self.scheduler_config, self.session,
                                     split=TRANSFORMER_STEP.name in manifest.components)
        self._sessions: dict = {}
        self._low_memory: dict[str, bool] = {}

    @classmethod
    def from_export(cls, export_dir: str | Path, backend: str = "onnxruntime", verify: bool = True,
                    max_memory: int | None = None, keep_loaded: bool | None = None, **backend_options):
        manifest = load_manifest(export_dir, verify=verify)
        return cls(manifest, get_backend(backend, manifest=manifest, **backend_options), max_memory, keep_loaded)

    def session(self, name: str, low_memory: bool = False):
        """The loaded session of a component; `low_memory` trades speed for a tighter peak (the
        decoder when the plan tiles it) and reloads a session loaded the other way."""
        loaded = self._sessions.get(name)
        if loaded is not None and self._low_memory.get(name, False) != low_memory:
            self.release(name)
            loaded = None
        if loaded is None:
            self._sessions[name] = self.backend.load_component(self.manifest, name, low_memory=low_memory)
            self._low_memory[name] = low_memory
        return self._sessions[name]

    def release(self, name: str) -> None:
        session = self._sessions.pop(name, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        """Release every loaded session."""
        for name in list(self._sessions):
            self.release(name)

    def plan(self, height: int, width: int) -> MemoryPlan:
        """The memory plan for one run at this size (see sana_edge.planner)."""
        budget = self.max_memory or self.backend.memory_budget()
        sizes = self.backend.stage_bytes(self.manifest)
        # Sessions kept from an earlier call are already in the memory in use: count them once.
        component_bytes = sizes.bytes if hasattr(sizes, "bytes") else sizes
        loaded = sum(int(component_bytes.get(name, 0)) for name in self._sessions)
        return plan_memory(
            self.manifest.model, sizes, height, width, budget,
            keep_loaded=self.keep_loaded, base=max(0, self.backend.memory_in_use() - loaded),
            max_tile=self.backend.max_decoder_tile(self.manifest), text_length=self.tokenizer.text_encoder_length,
        )

    @property
    def default_size(self) -> int:
        return self.manifest.model.default_size

    # -- stages -------------------------------------------------------------------------------

    def encode_prompts(self, prompt: str, negative_prompt: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Caption embeddings and masks, batch [negative, positive] when negative is given."""
        return self.prompt_encoder.encode(prompt, negative_prompt)

    def transformer_feeds(self, latents, embeds, mask, timestep) -> dict:
        """The transformer's inputs at one step (CFG: the latents doubled, batch [neg, pos])."""
        return self.denoiser.feeds(latents, embeds, mask, timestep)

    def denoise(self, latents, embeds, mask, steps, guidance_scale, on_step: Callable | None = None):
        """Run the sampler; `on_step(done, total, latents)` is called after every step."""
        return self.denoiser.run(latents, embeds, mask, steps, guidance_scale, on_step)

    def decoder_input(self, latents: np.ndarray) -> np.ndarray:
        """What the decoder is fed for the sampler's final latents (SANA divides by the VAE scaling)."""
        return (latents / np.float32(self.manifest.model.vae_scaling_factor)).astype(np.float32)

    def decode(self, latents: np.ndarray, tile: int | None = None, on_tile: Callable | None = None) -> np.ndarray:
        """Latents -> image in [-1, 1]; `tile` (latent positions) decodes in overlapping tiles."""
        scaled = self.decoder_input(latents)
        session = self.session(DECODER.name, low_memory=tile is not None)

        def run(latent):
            return session.run({"latent": latent})["image"]

        if tile is None:
            return run(scaled)
        return decode_tiled(run, scaled, tile, self.manifest.model.vae_scale_factor, on_tile=on_tile)

    def _stage(self, name: str, plan: MemoryPlan, timings: dict, memory: dict, work: Callable):
        """Run one stage, timing it and measuring its peak memory; release it unless kept loaded."""
        read = None if self.backend.memory_kind == "RSS" else self.backend.memory_in_use
        start = time.perf_counter()
        with PeakMemory(read) as peak:
            result = work()
            if not plan.keep_loaded:
                for component in STAGES[name]:
                    self.release(component)
        timings[name if name != DECODER.name else "decode"] = time.perf_counter() - start
        memory[name] = peak.peak
        return result

    # -- whole run ----------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        steps: int = 20,
        guidance_scale: float = 4.5,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        on_step: Callable | None = None,
        output_type: str = "pil",
    ) -> GenerationResult:
        """`output_type="latent"` stops before the decoder (result.image is None), as diffusers'."""
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent' (got {output_type!r})")
        model = self.manifest.model
        factor = model.vae_scale_factor
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        check_image_side("height", height, factor)
        check_image_side("width", width, factor)
        if steps < 1:
            raise UserError(f"steps must be at least 1 (got {steps})")
        shape = (1, model.latent_channels, height // factor, width // factor)
        if latents is None:
            if seed is None:
                seed = int(np.random.SeedSequence().entropy % (2**31))
            latents = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        else:
            latents = np.asarray(latents, dtype=np.float32)
            if latents.shape != shape:
                raise UserError(f"initial latents have shape {latents.shape}, {height}x{width} px needs {shape}")

        plan = self.plan(height, width)  # before any work: a budget no plan fits fails here
        self.backend.check_size(self.manifest, height, width)
        timings, memory = {}, {}
        negative = negative_prompt if guidance_scale > 1.0 else None
        embeds, mask = self._stage(TEXT_ENCODER.name, plan, timings, memory,
                                   lambda: self.encode_prompts(prompt, negative))
        latents = self._stage(TRANSFORMER.name, plan, timings, memory,
                              lambda: self.denoise(latents, embeds, mask, steps, guidance_scale, on_step))
        timings["denoise"] = timings.pop(TRANSFORMER.name)
        if output_type == "latent":
            return GenerationResult(None, latents, seed, timings, memory, plan)
        image = self._stage(DECODER.name, plan, timings, memory, lambda: self.decode(latents, plan.decoder_tile))
        return GenerationResult(to_pil(image), latents, seed, timings, memory, plan)

    def __call__(self, prompt: str, **kwargs):
        return self.generate(prompt, **kwargs).image
