"""SCM / TrigFlow sampling in numpy: Sana-Sprint's sampler, equal to diffusers' `SCMScheduler` as
`SanaSprintPipeline` drives it (schedule, the transformer's input and timestep transform, the
velocity-to-x0 formula and the re-noising between steps).

The arithmetic follows the diffusers float32 order of operations so that trajectories agree to
float32 rounding (tests/test_scm_scheduler.py checks 1e-5 against diffusers, 1-4 steps and
custom timesteps). Times are TrigFlow angles in [0, pi/2]: pi/2 is pure noise, 0 the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UserError

F32 = np.float32


@dataclass(frozen=True)
class SCMConfig:
    """The checkpoint's SCMScheduler config (scheduler_config.json) plus the pipeline's schedule
    defaults (SanaSprintPipeline's `max_timesteps` / `intermediate_timesteps`)."""

    sigma_data: float = 0.5
    num_train_timesteps: int = 1000
    max_timesteps: float = 1.5708
    intermediate_timesteps: float = 1.3

    @classmethod
    def from_diffusers(cls, config: dict, max_timesteps: float = 1.5708,
                       intermediate_timesteps: float = 1.3) -> "SCMConfig":
        """Read a diffusers SCMScheduler config, refusing what this sampler does not compute."""
        name = config.get("_class_name", "SCMScheduler")
        if name != "SCMScheduler":
            raise UserError(f"a Sana-Sprint export needs the SCMScheduler, but its scheduler config is {name}; "
                            "re-export the Sprint checkpoint as shipped (its scheduler folder)")
        if config.get("prediction_type", "trigflow") != "trigflow":
            raise UserError(f"SCMScheduler prediction_type={config.get('prediction_type')!r} is not supported; "
                            "sana-edge samples Sana-Sprint with prediction_type 'trigflow'")
        return cls(sigma_data=float(config.get("sigma_data", 0.5)),
                   num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
                   max_timesteps=float(max_timesteps), intermediate_timesteps=float(intermediate_timesteps))


def scm_timesteps(config: SCMConfig, steps: int, timesteps=None) -> np.ndarray:
    """The `steps + 1` TrigFlow times of a run, float32, from noise to image.

    Default: `max_timesteps` .. 0 evenly spaced, except 2 steps, which pass through
    `intermediate_timesteps` (diffusers' defaults; its pipeline raises for an intermediate time
    with other step counts, where this uses the even spacing instead). `timesteps`: custom times,
    `steps + 1` values decreasing within [0, pi/2]."""
    if steps < 1:
        raise UserError(f"steps must be at least 1 (got {steps})")
    if steps > config.num_train_timesteps:
        raise UserError(f"steps {steps} exceeds the scheduler's {config.num_train_timesteps} train timesteps")
    if timesteps is not None:
        values = np.asarray(timesteps, dtype=np.float64).reshape(-1)
        if values.size != steps + 1:
            raise UserError(f"custom timesteps need steps + 1 = {steps + 1} values (got {values.size}), "
                            "from noise (at most pi/2 = 1.5708) down to 0")
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > math.pi / 2 + 1e-4 \
                or np.any(np.diff(values) >= 0):
            raise UserError(f"custom timesteps {values.tolist()} must decrease strictly within [0, 1.5708] (TrigFlow "
                            "angles: 1.5708 is pure noise, 0 the image)")
        return values.astype(F32)
    if steps == 2:
        return np.array([config.max_timesteps, config.intermediate_timesteps, 0.0], F32)
    return np.linspace(config.max_timesteps, 0.0, steps + 1).astype(F32)


def scm_time(t: np.float32) -> np.float32:
    """The transformer's timestep for TrigFlow time t: sin t / (cos t + sin t), in [0, 1]."""
    t = F32(t)
    return F32(np.sin(t) / (np.cos(t) + np.sin(t)))


def _norm(scm: np.float32) -> np.float32:
    return F32(np.sqrt(scm**2 + (F32(1) - scm) ** 2))


def model_input(sample: np.ndarray, t: np.float32, sigma_data: float) -> tuple[np.ndarray, np.float32]:
    """(the transformer's latent input, its timestep) for the sample at TrigFlow time t."""
    scm = scm_time(t)
    scaled = sample.astype(F32, copy=False) / F32(sigma_data)
    return (scaled * _norm(scm)).astype(F32, copy=False), scm


def velocity(output: np.ndarray, model_in: np.ndarray, scm: np.float32, sigma_data: float) -> np.ndarray:
    """The TrigFlow velocity from the transformer's output (flow prediction at time scm)."""
    one, two = F32(1), F32(2)
    mixed = (one - two * scm) * model_in + (one - two * scm + two * scm**2) * output.astype(F32, copy=False)
    return ((mixed / _norm(scm)) * F32(sigma_data)).astype(F32, copy=False)


def step(velocity_: np.ndarray, sample: np.ndarray, s: np.float32, t: np.float32,
         noise: np.ndarray | None, sigma_data: float) -> tuple[np.ndarray, np.ndarray]:
    """One SCM step from time s to time t: (next sample, predicted x0). `noise` is standard
    normal (scaled by sigma_data here); None on the last step, whose sample nobody reads (diffusers
    draws it anyway and multiplies it by sin 0 = 0 when the schedule ends at 0)."""
    s, t = F32(s), F32(t)
    x0 = (np.cos(s) * sample.astype(F32, copy=False) - np.sin(s) * velocity_).astype(F32, copy=False)
    if noise is None:  # the last step: its sample is not used, only x0
        return (np.cos(t) * x0).astype(F32, copy=False), x0
    renoise = noise.astype(F32, copy=False) * F32(sigma_data)
    return (np.cos(t) * x0 + np.sin(t) * renoise).astype(F32, copy=False), x0
