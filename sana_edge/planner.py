"""Memory planner: which stages stay loaded and how the decoder is tiled, for a memory budget.

Stages run one at a time (text encoder, transformer, decoder). Each stage's need is its weights
(the graph or engine files' size, which is what the session holds) plus an activation estimate
that grows with the image (declared per component in sana_edge.components, fitted to the
full-size models' measured peaks); the decoder's estimate follows the tile, not the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .components import COMPONENTS
from .errors import UserError
from .memory import format_bytes

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


def activation_bytes(stage: str, model, height_px: int, width_px: int, text_length: int = 300) -> int:
    """The stage's activation estimate, declared with its component (sana_edge.components)."""
    return COMPONENTS[stage].activation_bytes(model, height_px, width_px, text_length)


def plan_memory(model, weights: dict, height: int, width: int, budget: int, keep_loaded: bool = False,
                base: int = 0, max_tile: int | None = None, text_length: int = 300) -> MemoryPlan:
    """Choose residency and decoder tile for a `height` x `width` px run within `budget` bytes.

    `weights`: stage -> bytes of its graph/engine; `base`: memory in use before any stage loads
    (the Python process on CPU, the CUDA context on GPU); `max_tile`: the largest decoder input
    the engine's profile allows (latent positions), None when any size runs.
    """
    factor = model.vae_scale_factor
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
