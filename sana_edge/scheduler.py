"""Flow-DPM-Solver in numpy: SANA's sampler, equal to diffusers' DPMSolverMultistepScheduler with
`use_flow_sigmas=True, prediction_type="flow_prediction", algorithm_type="dpmsolver++"`.

The arithmetic mirrors diffusers' float32 order of operations so that trajectories agree to
float32 rounding. The config is a small frozen dataclass read from the checkpoint's
scheduler_config.json; unsupported settings are refused rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import UserError

# Settings that must hold for this implementation to equal diffusers' computation.
_REQUIRED = {
    "use_flow_sigmas": True,
    "prediction_type": "flow_prediction",
    "algorithm_type": "dpmsolver++",
    "final_sigmas_type": "zero",
    "thresholding": False,
    "use_karras_sigmas": False,
    "use_lu_lambdas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}


@dataclass(frozen=True)
class FlowDPMSolverConfig:
    flow_shift: float = 3.0
    num_train_timesteps: int = 1000
    solver_order: int = 2
    solver_type: str = "midpoint"
    # lower_order_final / euler_at_final are not fields: with final_sigmas_type "zero" (required
    # above) diffusers takes the last step at first order whatever they say, and so does step().

    @classmethod
    def from_diffusers(cls, config: dict) -> "FlowDPMSolverConfig":
        """Read a diffusers scheduler_config.json dict, refusing settings this solver lacks."""
        for key, wanted in _REQUIRED.items():
            got = config.get(key, False if isinstance(wanted, bool) else None)
            if got != wanted:
                raise UserError(
                    f"scheduler config has {key}={got!r}; sana-edge's Flow-DPM-Solver needs {key}={wanted!r}"
                )
        order = int(config.get("solver_order", 2))
        solver_type = config.get("solver_type", "midpoint")
        if order not in (1, 2) or solver_type not in ("midpoint", "heun"):
            raise UserError(
                f"scheduler solver_order={order}, solver_type={solver_type!r} is not supported; "
                "use solver_order 1 or 2 with solver_type 'midpoint' or 'heun'"
            )
        return cls(
            flow_shift=float(config.get("flow_shift", 1.0)),
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            solver_order=order,
            solver_type=solver_type,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def flow_schedule(config: FlowDPMSolverConfig, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps int64[steps], sigmas float32[steps + 1]) with the final sigma 0."""
    if steps < 1:
        raise UserError(f"steps must be at least 1 (got {steps})")
    n_train = config.num_train_timesteps
    shift = config.flow_shift
    u = 1.0 - np.linspace(1.0, 1.0 / n_train, steps + 1)
    sigmas = np.flip(shift * u / (1.0 + (shift - 1.0) * u))[:-1].copy()
    timesteps = (sigmas * n_train).astype(np.int64)  # truncation, as torch's int64 cast
    sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
    return timesteps, sigmas


class FlowDPMSolver:
    """Multistep solver state for one trajectory: `set_timesteps(n)`, then `step()` once per step."""

    def __init__(self, config: FlowDPMSolverConfig):
        self.config = config
        self.timesteps = np.zeros(0, np.int64)
        self.sigmas = np.zeros(1, np.float32)
        self._index = 0
        self._previous_x0: np.ndarray | None = None

    @classmethod
    def from_diffusers_config(cls, config: dict) -> "FlowDPMSolver":
        return cls(FlowDPMSolverConfig.from_diffusers(config))

    def set_timesteps(self, steps: int) -> np.ndarray:
        self.timesteps, self.sigmas = flow_schedule(self.config, steps)
        self._index = 0
        self._previous_x0 = None
        return self.timesteps

    def set_begin_index(self, index: int) -> None:
        """Start at scheduled step `index` (image-to-image), at first order there as diffusers does
        (no previous prediction yet)."""
        if not 0 <= index < len(self.timesteps):
            raise ValueError(f"begin index {index} outside the {len(self.timesteps)} scheduled steps")
        self._index = index
        self._previous_x0 = None

    def _alpha_sigma_lambda(self, index: int):
        sigma = self.sigmas[index]
        alpha = np.float32(1.0) - sigma
        with np.errstate(divide="ignore"):  # sigma 0 at the end gives lambda = +inf, as in torch
            lam = np.log(alpha) - np.log(sigma)
        return alpha, sigma, lam

    def step(self, velocity: np.ndarray, sample: np.ndarray) -> np.ndarray:
        """Advance `sample` by one step given the (guided) velocity prediction."""
        i = self._index
        if i >= len(self.timesteps):
            raise RuntimeError("step() called more times than set_timesteps() allowed")
        sample = sample.astype(np.float32, copy=False)
        x0 = sample - self.sigmas[i] * velocity.astype(np.float32, copy=False)
        last = i == len(self.timesteps) - 1  # final sigma is zero: always first order there
        first_order = self.config.solver_order == 1 or self._previous_x0 is None or last

        alpha_t, sigma_t, lambda_t = self._alpha_sigma_lambda(i + 1)
        _, sigma_s0, lambda_s0 = self._alpha_sigma_lambda(i)
        h = lambda_t - lambda_s0
        decay = alpha_t * (np.exp(-h) - np.float32(1.0))
        ratio = sigma_t / sigma_s0
        if first_order:
            out = ratio * sample - decay * x0
        else:
            _, _, lambda_s1 = self._alpha_sigma_lambda(i - 1)
            r0 = (lambda_s0 - lambda_s1) / h
            d1 = (np.float32(1.0) / r0) * (x0 - self._previous_x0)
            if self.config.solver_type == "midpoint":
                out = ratio * sample - decay * x0 - np.float32(0.5) * decay * d1
            else:  # heun
                out = ratio * sample - decay * x0 + (alpha_t * ((np.exp(-h) - np.float32(1.0)) / h + np.float32(1.0))) * d1
        self._previous_x0 = x0
        self._index += 1
        return out.astype(np.float32, copy=False)
