"""SanaEdgePipeline: prompt -> image over exported graphs, numpy on the hot path, no torch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import get_backend
from .checks import MEMORY_BUDGET, check_finite, check_generation, check_image_side, check_initial_latents, check_text
from .components import DECODER, ENCODER, STAGES, TEXT_ENCODER, TRANSFORMER, TRANSFORMER_STEP
from .control import check_control, control_feeds
from .errors import UserError
from .image_encoding import ImageEncoder, load_image
from .image_io import to_pil
from .manifest import Manifest, load_manifest
from .memory import PeakMemory
from .planner import MemoryPlan, plan_memory
from .prompt import PromptTokenizer
from .prompt_cache import load_prompt_cache
from .sampling import Noise, Sampler, Schedule
from .text_encoding import PromptEncoder
from .tiling import decode_tiled


# What a non-finite latent or image most likely means: graphs that were modified or damaged.
_BROKEN_GRAPHS = "the export's graphs are damaged or were modified: run without --no-verify, or re-export"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


@dataclass(frozen=True)
class PreparedRun:
    """A run's checked arguments and memory plan (SanaEdgePipeline.prepare)."""

    height: int
    width: int
    latents: np.ndarray  # initial noise, float32
    seed: int | None
    plan: MemoryPlan
    steps: int
    guidance_scale: float
    schedule: Schedule  # the steps taken (image-to-image starts later; Sprint's TrigFlow times)
    noise: Noise  # the initial noise and Sprint's per-step noise
    pixels: np.ndarray | None = None  # image-to-image input, in [-1, 1]
    control: np.ndarray | None = None  # ControlNet condition image, in [-1, 1]


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
        if max_memory is not None:
            MEMORY_BUDGET.check("max_memory (bytes)", max_memory)
        self.manifest = manifest
        self.backend = backend
        self.max_memory, self.keep_loaded = max_memory, keep_loaded
        model = manifest.model
        try:
            self.tokenizer = PromptTokenizer(manifest.tokenizer_path, model.complex_human_instruction,
                                             model.max_sequence_length)
        except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot parse
            raise UserError(f"{manifest.tokenizer_path} is not a tokenizer file ({_reason(exc)}); re-run `sana-edge export`") from None
        self.scheduler_config = manifest.scheduler_config
        cache_path = manifest.prompt_cache_path
        cache = load_prompt_cache(cache_path, model) if cache_path is not None else None
        self.prompt_encoder = PromptEncoder(self.tokenizer, self.session, cache=cache, model=model)
        try:
            # Flow-DPM-Solver (single or split transformer graphs) or Sana-Sprint's SCM sampler
            self.sampler = Sampler(model, self.scheduler_config, self.session,
                                   split=TRANSFORMER_STEP.name in manifest.components)
        except (TypeError, ValueError, KeyError) as exc:  # a config value of the wrong type
            raise UserError(f"the export's scheduler config is not valid ({_reason(exc)}); re-run `sana-edge export`") from None
        self.denoiser = self.sampler.denoiser
        self.image_encoder = ImageEncoder(manifest, self.session)
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

    def plan(self, height: int, width: int, encode: bool = False) -> MemoryPlan:
        """The memory plan for one run at this size (see sana_edge.planner); `encode`: the run
        encodes an input image first."""
        budget = self.max_memory or self.backend.memory_budget()
        sizes = self.backend.stage_bytes(self.manifest)
        # Sessions kept from an earlier call are already in the memory in use: count them once.
        component_bytes = sizes.bytes if hasattr(sizes, "bytes") else sizes
        loaded = sum(int(component_bytes.get(name, 0)) for name in self._sessions)
        return plan_memory(
            self.manifest.model, sizes, height, width, budget,
            keep_loaded=self.keep_loaded, base=max(0, self.backend.memory_in_use() - loaded),
            max_tile=self.backend.max_decoder_tile(self.manifest), text_length=self.tokenizer.text_encoder_length,
            encode=encode,
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
        timings[{DECODER.name: "decode", ENCODER.name: "encode"}.get(name, name)] = time.perf_counter() - start
        memory[name] = peak.peak
        return result

    def _input_images(self, image, control_image, control_scale: float, height, width):
        """(image pixels, control pixels, height, width): the first image given sets the size
        unless height/width do; the other is resized to it, as diffusers does."""
        pixels = control = None
        factor = self.manifest.model.vae_scale_factor
        if image is not None:
            self.image_encoder.require("--image")
            pixels = load_image(image, height, width, factor, "--image")
            height, width = pixels.shape[2:]
        if control_image is not None:
            check_control(self.manifest, control_scale)
            self.image_encoder.require("--control-image")
            control = load_image(control_image, height, width, factor, "--control-image")
            height, width = control.shape[2:]
        return pixels, control, height, width

    # -- whole run ----------------------------------------------------------------------------

    def prepare(self, prompt: str, negative_prompt: str = "", height: int | None = None, width: int | None = None,
                steps: int | None = None, guidance_scale: float | None = None, seed: int | None = None,
                latents: np.ndarray | None = None, step_noise: np.ndarray | None = None, timesteps=None,
                image=None, strength: float = 0.6, control_image=None, control_scale: float = 1.0) -> PreparedRun:
        """Check every argument of a run (see `generate`), load its input images and plan its memory,
        before any model work (`sana-edge run --dry-run`)."""
        check_text("prompt", prompt)
        check_text("negative prompt", negative_prompt)
        model = self.manifest.model
        steps = model.default_steps if steps is None else steps
        guidance_scale = model.default_guidance if guidance_scale is None else guidance_scale
        check_generation(steps, guidance_scale, seed)
        factor = model.vae_scale_factor
        pixels, control, height, width = self._input_images(image, control_image, control_scale, height, width)
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        check_image_side("height", height, factor)
        check_image_side("width", width, factor)
        schedule = self.sampler.schedule(steps, negative_prompt, timesteps, strength if image is not None else None,
                                         step_noise)
        shape = (1, model.latent_channels, height // factor, width // factor)
        if latents is not None:
            latents = check_initial_latents(latents, shape, f"{height}x{width} px")
        noise = Noise(shape, schedule.noisy_steps, seed, latents, step_noise)
        plan = self.plan(height, width, encode=pixels is not None or control is not None)  # a budget no plan fits fails here
        self.backend.check_size(self.manifest, height, width)
        return PreparedRun(height, width, noise.initial, noise.seed, plan, steps, guidance_scale, schedule, noise,
                           pixels, control)

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        on_step: Callable | None = None,
        output_type: str = "pil",
        step_noise: np.ndarray | None = None,
        timesteps=None,
        image=None,
        strength: float = 0.6,
        control_image=None,
        control_scale: float = 1.0,
    ) -> GenerationResult:
        """`steps` / `guidance_scale` default to the model's (manifest: 2 and its guidance for
        Sana-Sprint, 20 and CFG 4.5 for Sana). `latents`: the initial noise (with `image`, the noise
        mixed into it); `step_noise`: Sprint's per-step noise, (steps - 1, *latents.shape);
        `timesteps`: Sprint's custom TrigFlow times. `image` + `strength`: image-to-image;
        `control_image` + `control_scale`: ControlNet (images: a path, PIL image or HxWx3 uint8).
        `output_type="latent"` stops before the decoder (result.image is None), as diffusers'."""
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent' (got {output_type!r})")
        run = self.prepare(prompt, negative_prompt, height, width, steps, guidance_scale, seed, latents, step_noise,
                           timesteps, image, strength, control_image, control_scale)
        plan, guidance_scale = run.plan, run.guidance_scale
        timings, memory = {}, {}
        negative = self.sampler.negative(negative_prompt, guidance_scale)
        embeds, mask = self._stage(TEXT_ENCODER.name, plan, timings, memory,
                                   lambda: self.encode_prompts(prompt, negative))
        image_latents, control = None, run.control
        if run.pixels is not None or control is not None:
            encode = lambda x: None if x is None else self.image_encoder.encode(x, plan.encoder_tile)  # noqa: E731
            image_latents, control = self._stage(ENCODER.name, plan, timings, memory,
                                                 lambda: (encode(run.pixels), encode(control)))
        hook = control_feeds(self.manifest, self.session, control, control_scale)  # None without a controlnet
        sample = self.sampler.initial(run.latents, image_latents, run.schedule)
        latents = self._stage(TRANSFORMER.name, plan, timings, memory, lambda: self.sampler.run(
            sample, embeds, mask, run.schedule, guidance_scale, on_step, run.noise.step, hook))
        timings["denoise"] = timings.pop(TRANSFORMER.name)
        check_finite("the denoised latents", latents, _BROKEN_GRAPHS)
        if output_type == "latent":
            return GenerationResult(None, latents, run.seed, timings, memory, plan)
        image = self._stage(DECODER.name, plan, timings, memory, lambda: self.decode(latents, plan.decoder_tile))
        check_finite("the decoded image", image, _BROKEN_GRAPHS)
        if image.shape[-2:] != (run.height, run.width):  # the manifest's vae_scale_factor is not the graph's
            raise UserError(f"the decoder made a {image.shape[-1]}x{image.shape[-2]} image for {run.width}x{run.height} "
                            f"px; the export's manifest does not match its graphs: re-run `sana-edge export`")
        return GenerationResult(to_pil(image), latents, run.seed, timings, memory, plan)

    def __call__(self, prompt: str, **kwargs):
        return self.generate(prompt, **kwargs).image
