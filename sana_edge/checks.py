"""Checks of user-given values, in one place, each failing with a one-line UserError.

Every numeric option of every command has a range here (`Limit`), shared by the command line
(sana_edge.cli.app.number_option: checked while parsing, before any work) and the Python API
(SanaEdgePipeline.generate), so both refuse the same values with the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class Limit:
    """An inclusive range of accepted values; floats must also be finite (no nan, no inf)."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"

    def problem(self, value) -> str | None:
        """Why `value` is refused, or None when it is accepted."""
        if isinstance(value, bool) or not isinstance(value, Real):
            return f"{value!r} is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number; use a value within {self}"
        if not self.low <= value <= self.high:
            return f"{value} is outside {self}"
        return None

    def check(self, label: str, value) -> None:
        problem = self.problem(value)
        if problem:
            raise UserError(f"{label}: {problem}")


# Ranges. Steps: Flow-DPM-Solver picks distinct timesteps out of the 1000 training ones, and a
# step count in the millions only grows memory until the kernel kills the process.
STEPS = Limit(1, 1000)
GUIDANCE = Limit(0.0, 100.0)  # <= 1 turns CFG off; SANA uses 4.5
SEED = Limit(0, 2**32 - 1)  # numpy's generators take any non-negative int; one convention everywhere
IMAGE_SIDE = Limit(32, 8192)  # px; a multiple of the model's VAE factor too (check_image_side)
MEMORY_BUDGET = Limit(1 << 20, 1 << 50)  # bytes: 1 MiB .. 1 PiB
CALIB_SIZE = Limit(1, 1000)
CALIB_STEPS = Limit(1, 100)
TRAIN_STEPS = Limit(1, 1_000_000)
THREADS = Limit(1, 1024)
REPEATS = Limit(1, 1000)
WARMUP = Limit(0, 100)
EVAL_CAPTIONS = Limit(0, 10_000)
ALPHA = Limit(0.0, 1.0)
# Initial noise is standard normal: |x| above this is not noise but a mistake (a wrong file, a
# scale applied twice); values like 1e30 overflow the first transformer step to inf.
LATENT_MAGNITUDE = 1e3


def check_image_side(label: str, value: int, multiple: int) -> None:
    """Image sides (and tile sizes) are positive multiples of the VAE's scale factor."""
    if value <= 0 or value % multiple:
        nearest = max(multiple, round(value / multiple) * multiple)
        raise UserError(f"{label} {value} must be a positive multiple of {multiple} (e.g. {nearest})")
    IMAGE_SIDE.check(label, value)


def check_generation(steps: int, guidance_scale: float, seed: int | None) -> None:
    """The sampler's settings, as `sana-edge run` and `SanaEdgePipeline.generate` take them."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise UserError(f"steps must be a whole number (got {steps!r})")
    STEPS.check("steps", int(steps))
    GUIDANCE.check("guidance scale", guidance_scale)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise UserError(f"seed must be a whole number (got {seed!r})")
        SEED.check("seed", int(seed))


def check_text(label: str, text) -> None:
    """Prompts are text: a str that encodes as UTF-8 (bytes that are not UTF-8 arrive from the
    shell as lone surrogates, which the tokenizer and the PNG metadata cannot hold)."""
    if not isinstance(text, str):
        raise UserError(f"{label} must be text (got {type(text).__name__})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{label} is not valid UTF-8 text; check the terminal's encoding or pass the text again") from None


def check_finite(what: str, array: np.ndarray, fix: str) -> None:
    """Refuse arrays holding NaN or Inf (a broken graph, or overflow) before they are used or written."""
    if not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise UserError(f"{what}: {bad} of {array.size} values are not finite (NaN/Inf); nothing was written; {fix}")


def check_initial_latents(latents, shape: tuple, size: str) -> np.ndarray:
    """User-supplied initial noise: real numbers of the right shape, finite and noise-sized."""
    array = np.asarray(latents)
    if array.dtype.kind not in "fiu":
        raise UserError(f"initial latents have dtype {array.dtype}, not numbers; pass float32 noise of shape {shape}")
    if array.shape != shape:
        raise UserError(f"initial latents have shape {array.shape}, {size} needs {shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(np.float32)
    check_finite("initial latents", array, "pass finite noise, e.g. np.random.standard_normal")
    peak = float(np.abs(array).max(initial=0.0))
    if peak > LATENT_MAGNITUDE:
        raise UserError(f"initial latents reach |x| = {peak:.3g}, above {LATENT_MAGNITUDE:g}: they should be "
                        "standard normal noise; pass e.g. np.random.standard_normal(shape)")
    return array
