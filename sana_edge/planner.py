"""Memory planner: which stages stay loaded and how the decoder is tiled, for a memory budget.

Stages run one at a time (text encoder, transformer, decoder). Each stage's need is its weights
(the graph or engine files' size, which is what the session holds) plus an activation estimate
that grows with the image (declared per component in sana_edge.components, fitted to the
full-size models' measured peaks, rounded up so a plan errs on the side of smaller tiles); the
decoder's estimate follows the tile, not the image.

TensorRT stages are sized differently (the backend passes a `StageSizes` with `engines=True`):
an execution context reserves its working memory for the profile's largest shapes when it is
created, so a stage needs engine bytes + `device_memory_size_v2` + its I/O buffers whatever the
image or tile, a smaller decoder tile saves nothing, and a tile must stay within the decoder
profile (never below its minimum). Engines are kept loaded when they all fit, because reloading
one recompiles its kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .components import COMPONENTS, stage_of
from .errors import UserError
from .memory import format_bytes

SESSION_OVERHEAD = 1.15  # a session holds its weights plus allocator slack
TILE_CHOICES = (64, 48, 32, 24, 16, 12, 8, 6, 4)  # latent positions (x32 px), largest first


@dataclass(frozen=True)
class StageSizes:
    """What each stage's session holds, as a backend reports it to the planner."""

    bytes: dict  # stage -> bytes (weights, or with `engines` the whole stage)
    engines: bool = False  # TensorRT: `bytes` include working memory and I/O at the profile's largest shapes
    min_tile: int | None = None  # smallest decoder input side the engine profile takes (latent positions)


@dataclass
class MemoryPlan:
    budget: int
    keep_loaded: bool
    decoder_tile: int | None  # latent positions per tile side; None = decode in one piece
    stage_bytes: dict = field(default_factory=dict)  # stage -> estimated peak need (base included)
    base: int = 0
    notes: list = field(default_factory=list)
    encoder_tile: int | None = None  # the same for encoding an input image (image-to-image, ControlNet)

    @property
    def peak(self) -> int:
        return self.resident_peak if self.keep_loaded else max(self.stage_bytes.values())

    @property
    def resident_peak(self) -> int:
        """Every stage loaded at once (the base counted once)."""
        needs = list(self.stage_bytes.values())
        return sum(needs) - (len(needs) - 1) * self.base

    def describe(self) -> str:
        tiling = f"decoder tiles of {self.decoder_tile * 32} px" if self.decoder_tile else "decoder untiled"
        if "vae_encoder" in self.stage_bytes:
            tiling += f", encoder tiles of {self.encoder_tile * 32} px" if self.encoder_tile else ", encoder untiled"
        stages = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.stage_bytes.items())
        residency = "stages kept loaded" if self.keep_loaded else "one stage loaded at a time"
        return f"plan for {format_bytes(self.budget)}: {residency}, {tiling}; estimated need {stages}"


def activation_bytes(stage: str, model, height_px: int, width_px: int, text_length: int = 300) -> int:
    """The stage's activation estimate, declared with its component (sana_edge.components)."""
    return COMPONENTS[stage].activation_bytes(model, height_px, width_px, text_length)


def stage_totals(component_bytes: dict) -> dict:
    """Component bytes summed per pipeline stage (the split transformer's two graphs are one stage)."""
    totals: dict = {}
    for component, size in component_bytes.items():
        stage = stage_of(component)
        totals[stage] = totals.get(stage, 0) + int(size)
    return totals


def _stage_needs(model, sizes: StageSizes, height: int, width: int, base: int, text_length: int):
    """(need per stage at this size, tiled need of a VAE stage as a function of (stage, tile)).
    A controlnet runs inside the transformer stage (both at every step), so its need joins it."""
    factor = model.vae_scale_factor
    weights = dict(sizes.bytes)
    controlnet = weights.pop("controlnet", None)
    if sizes.engines:
        need = {stage: base + b for stage, b in stage_totals(weights).items()}
        if controlnet is not None:
            need["transformer"] += int(controlnet)
        return need, lambda stage, tile: need[stage]
    need = {stage: base + int(w * SESSION_OVERHEAD) for stage, w in stage_totals(weights).items()}
    need["text_encoder"] += activation_bytes("text_encoder", model, height, width, text_length)
    if controlnet is None:
        need["transformer"] += activation_bytes("transformer", model, height, width)
    else:
        need["transformer"] += int(controlnet * SESSION_OVERHEAD) + activation_bytes("controlnet", model, height, width)
    vae_base = dict(need)
    latent_h, latent_w = height // factor, width // factor

    def tiled_need(stage: str, tile: int | None) -> int:
        th, tw = (latent_h, latent_w) if tile is None else (min(tile, latent_h), min(tile, latent_w))
        return vae_base[stage] + activation_bytes(stage, model, th * factor, tw * factor)

    return need, tiled_need


def _over_budget(stage: str, need: int, budget: int, engines: bool, where: str) -> str:
    if engines:  # an engine's need is fixed by its profile, not by the image size
        return (f"--max-memory {format_bytes(budget)} is below what the {stage} engine needs (about {format_bytes(need)}: "
                "engine, working memory for its largest profile shape, I/O buffers); raise --max-memory, or rebuild "
                "the engines with a smaller --max-size/--decoder-tile or a lower precision")
    return (f"--max-memory {format_bytes(budget)} is below what the {stage} needs{where} (about {format_bytes(need)}); "
            + ("raise --max-memory to at least that" if stage in ("decoder", "encoder") else
               "raise --max-memory or choose a smaller size or lower precision"))


def tile_candidates(latent_h: int, latent_w: int, max_tile: int | None, min_tile: int | None) -> list:
    """Decoder tilings the profile allows, largest first (None: in one piece)."""
    longest = max(latent_h, latent_w)
    fits_whole = max_tile is None or longest <= max_tile
    tiles = [t for t in TILE_CHOICES if t < longest and (max_tile is None or t <= max_tile)]
    if max_tile is not None and max_tile < longest and max_tile not in tiles:
        tiles.insert(0, max_tile)
    tiles = [t for t in tiles if min_tile is None or t >= min_tile]
    return ([None] if fits_whole else []) + tiles


def plan_memory(model, weights, height: int, width: int, budget: int, keep_loaded: bool | None = False,
                base: int = 0, max_tile: int | None = None, text_length: int = 300, encode: bool = False) -> MemoryPlan:
    """Choose residency and decoder tile for a `height` x `width` px run within `budget` bytes.

    `weights`: stage -> bytes of its graph (or a backend's `StageSizes`); `base`: memory in use
    before any stage loads (the Python process on CPU, the CUDA context on GPU); `max_tile`: the
    largest decoder input the engine's profile allows (latent positions), None when any size runs.
    `keep_loaded`: True keeps every stage loaded when they fit (a note when not), False releases
    each stage after it runs (the lowest peak: one image, nothing to reuse), None keeps them when
    they fit. `encode`: the run encodes an input image first (its encoder tile is planned like the
    decoder's, and the encoder stage counts only then). Raises UserError, before any work, when no
    plan fits the budget or the engine profile.
    """
    sizes = weights if isinstance(weights, StageSizes) else StageSizes(dict(weights))
    factor = model.vae_scale_factor
    latent_h, latent_w = height // factor, width // factor
    need, tiled_need = _stage_needs(model, sizes, height, width, base, text_length)
    if not encode:
        need.pop("vae_encoder", None)
    elif "vae_encoder" not in need:
        raise UserError("this export has no VAE encoder to encode the input image; re-export it with this sana-edge")
    candidates = tile_candidates(latent_h, latent_w, max_tile, sizes.min_tile)
    if not candidates:
        raise UserError(
            f"no decoder tile fits {width}x{height} within the decoder engine's profile "
            f"({sizes.min_tile * factor}..{max_tile * factor} px); rebuild the engines with a --decoder-tile that "
            "suits this size, or choose another size"
        )
    other_peak = max(need["text_encoder"], need["transformer"])
    if other_peak > budget:
        stage = max(("text_encoder", "transformer"), key=need.get)
        raise UserError(_over_budget(stage, need[stage], budget, sizes.engines, f" at {width}x{height}"))
    tiles = {}
    for stage in ("vae_decoder", "vae_encoder") if encode else ("vae_decoder",):
        tile = next((t for t in candidates if tiled_need(stage, t) <= budget), "none")
        if tile == "none":
            where = "" if sizes.engines else " even with the smallest tile"
            label = "decoder" if stage == "vae_decoder" else "encoder"
            raise UserError(_over_budget(label, tiled_need(stage, candidates[-1]), budget, sizes.engines, where))
        need[stage], tiles[stage] = tiled_need(stage, tile), tile
    plan = MemoryPlan(budget, False, tiles["vae_decoder"], need, base, encoder_tile=tiles.get("vae_encoder"))
    fits = plan.resident_peak <= budget
    if keep_loaded is None or sizes.engines:
        # Default: keep every stage loaded across images when they all fit (session creation
        # costs more than a small image's inference), release stage by stage otherwise. Engines
        # always follow this rule: reloading one recompiles its kernels.
        plan.keep_loaded = fits
    elif keep_loaded:
        plan.keep_loaded = fits
        if not fits:
            plan.notes.append(f"--keep-loaded ignored: all stages together need about "
                              f"{format_bytes(plan.resident_peak)}, over the {format_bytes(budget)} budget")
    return plan
