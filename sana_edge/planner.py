"""Memory planner: which stages stay loaded and how the decoder is tiled, for a memory budget.

Stages run one at a time (text encoder, transformer, decoder). Each stage's need is its weights
(the graph or engine files' size, which is what the session holds) plus an activation estimate
that grows with the image; the decoder's estimate follows the tile, not the image. Activation
factors were fitted to peak-memory measurements of the full-size models (see
benchmarks/memory_plan.py and benchmarks/results/memory.md) and round up, so a plan errs on
the side of smaller tiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError
from .memory import format_bytes

# Decoder: fp32 copies of the per-pixel feature volume alive at the peak (see
# _decoder_floats_per_pixel). Full-size DC-AE decoder on ONNX Runtime CPU, peak RSS over the
# loaded session: 0.25 / 0.98 / 3.16 GiB at 256 / 512 / 1024 px, i.e. 4.1-3.6 copies; 4.5 rounds up.
DECODER_LIVE_TENSORS = 4.5
# Transformer: bytes per token per unit of its widest (MLP) activation, batch 2 for CFG.
TRANSFORMER_LIVE_TENSORS = 4.0
TEXT_ENCODER_LIVE_TENSORS = 32.0
SESSION_OVERHEAD = 1.15  # a session holds its weights plus allocator slack
TILE_CHOICES = (64, 48, 32, 24, 16, 12, 8, 6, 4)  # latent positions (x32 px), largest first


@dataclass
class MemoryPlan:
    budget: int
    keep_loaded: bool
    decoder_tile: int | None  # latent positions per tile side; None = decode in one piece
    stage_bytes: dict = field(default_factory=dict)  # stage -> estimated peak need (base included)
    base: int = 0
    notes: list = field(default_factory=list)

    @property
    def peak(self) -> int:
        needs = list(self.stage_bytes.values())
        return sum(needs) - (len(needs) - 1) * self.base if self.keep_loaded else max(needs)

    def describe(self) -> str:
        tiling = f"decoder tiles of {self.decoder_tile * 32} px" if self.decoder_tile else "decoder untiled"
        stages = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.stage_bytes.items())
        residency = "stages kept loaded" if self.keep_loaded else "one stage loaded at a time"
        return f"plan for {format_bytes(self.budget)}: {residency}, {tiling}; estimated need {stages}"


def _decoder_floats_per_pixel(model: dict) -> float:
    # Feature volume per output pixel: stage i runs at 1/2^i of the resolution (DC-AE layout).
    channels = model.get("decoder_block_out_channels") or [128, 256, 512, 512, 1024, 1024]
    return sum(c / 4**i for i, c in enumerate(channels))


def activation_bytes(stage: str, model: dict, height_px: int, width_px: int, text_length: int = 300) -> int:
    pixels = height_px * width_px
    if stage == "vae_decoder":
        return int(pixels * _decoder_floats_per_pixel(model) * 4 * DECODER_LIVE_TENSORS)
    if stage == "transformer":
        tokens = pixels // int(model["vae_scale_factor"]) ** 2
        width = int(model.get("transformer_inner_dim", 1152)) * float(model.get("mlp_ratio", 2.5)) * 2  # GLU
        return int(2 * tokens * width * 4 * TRANSFORMER_LIVE_TENSORS)
    if stage == "text_encoder":
        return int(text_length * int(model["caption_channels"]) * 4 * TEXT_ENCODER_LIVE_TENSORS)
    raise ValueError(stage)


def plan_memory(model: dict, weights: dict, height: int, width: int, budget: int, keep_loaded: bool = False,
                base: int = 0, max_tile: int | None = None, text_length: int = 300) -> MemoryPlan:
    """Choose residency and decoder tile for a `height` x `width` px run within `budget` bytes.

    `weights`: stage -> bytes of its graph/engine; `base`: memory in use before any stage loads
    (the Python process on CPU, the CUDA context on GPU); `max_tile`: the largest decoder input
    the engine's profile allows (latent positions), None when any size runs.
    """
    factor = int(model["vae_scale_factor"])
    latent_h, latent_w = height // factor, width // factor
    need = {stage: base + int(w * SESSION_OVERHEAD) for stage, w in weights.items()}
    need["text_encoder"] += activation_bytes("text_encoder", model, height, width, text_length)
    need["transformer"] += activation_bytes("transformer", model, height, width)
    decoder_base = need["vae_decoder"]

    def decoder_need(tile: int | None) -> int:
        th, tw = (latent_h, latent_w) if tile is None else (min(tile, latent_h), min(tile, latent_w))
        return decoder_base + activation_bytes("vae_decoder", model, th * factor, tw * factor)

    fits_whole = max_tile is None or (latent_h <= max_tile and latent_w <= max_tile)
    candidates = ([None] if fits_whole else []) + [t for t in TILE_CHOICES
                                                   if t < max(latent_h, latent_w) and (max_tile is None or t <= max_tile)]
    if max_tile is not None and max_tile not in TILE_CHOICES and max_tile < max(latent_h, latent_w):
        candidates.insert(0 if not fits_whole else 1, max_tile)
    other_peak = max(need["text_encoder"], need["transformer"])
    if other_peak > budget:
        stage = max(("text_encoder", "transformer"), key=need.get)
        raise UserError(
            f"--max-memory {format_bytes(budget)} is below what the {stage} needs at {width}x{height} "
            f"(about {format_bytes(need[stage])}); raise --max-memory or choose a smaller size or lower precision"
        )
    tile = next((t for t in candidates if decoder_need(t) <= budget), "none")
    if tile == "none":
        smallest = decoder_need(candidates[-1]) if candidates else decoder_need(None)
        raise UserError(
            f"--max-memory {format_bytes(budget)} is below what the decoder needs even with the smallest tile "
            f"(about {format_bytes(smallest)}); raise --max-memory to at least that"
        )
    need["vae_decoder"] = decoder_need(tile)
    plan = MemoryPlan(budget, False, tile, need, base)
    if keep_loaded:
        plan.keep_loaded = True
        resident = plan.peak
        if resident > budget:
            plan.keep_loaded = False
            plan.notes.append(f"--keep-loaded ignored: all stages together need about {format_bytes(resident)}, "
                              f"over the {format_bytes(budget)} budget")
    return plan
