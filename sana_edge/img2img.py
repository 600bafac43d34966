"""Image-to-image: where a run starts and how the input image's latents are noised to that point.

Both samplers follow diffusers' img2img convention (`get_timesteps`): of `steps` scheduled steps,
the first `steps - int(steps * strength)` are skipped (strength 1 runs them all from pure noise),
and the image latents are noised to the first step that runs:
- Sana (Flow-DPM-Solver; diffusers 0.42 has no Sana img2img pipeline, so this is the
  flow-matching img2img of its SD3/Flux pipelines on Sana's scheduler): x = (1 - sigma) image +
  sigma noise, as DPMSolverMultistepScheduler.add_noise with flow sigmas;
- Sana-Sprint (SanaSprintImg2ImgPipeline): x = cos(t) image x sigma_data + sin(t) noise x sigma_data.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError

F32 = np.float32


def check_strength(strength: float) -> float:
    if not (isinstance(strength, (int, float)) and 0.0 < float(strength) <= 1.0):
        raise UserError(f"--strength must be in (0, 1] (got {strength}): 1 redraws the image from noise, "
                        "small values keep it")
    return float(strength)


def start_index(steps: int, strength: float) -> int:
    """Index of the first scheduled step an image-to-image run takes (diffusers' get_timesteps)."""
    strength = check_strength(strength)
    kept = min(steps * strength, steps)
    start = int(max(steps - kept, 0))
    if steps - start < 1:
        raise UserError(f"--strength {strength} with {steps} steps leaves no step to run; "
                        "raise --strength or --steps")
    return start


def flow_noised(image_latents: np.ndarray, noise: np.ndarray, sigma: np.float32) -> np.ndarray:
    """Flow matching at `sigma`: (1 - sigma) x + sigma noise (float32, diffusers' order)."""
    sigma = F32(sigma)
    return ((F32(1) - sigma) * image_latents + sigma * noise.astype(F32, copy=False)).astype(F32, copy=False)


def trigflow_noised(image_latents: np.ndarray, noise: np.ndarray, t: np.float32, sigma_data: float) -> np.ndarray:
    """TrigFlow at time t for Sana-Sprint: cos t (x sigma_data) + sin t (noise sigma_data)."""
    t, data = F32(t), F32(sigma_data)
    scaled_image = image_latents.astype(F32, copy=False) * data
    return (np.cos(t) * scaled_image + np.sin(t) * (noise.astype(F32, copy=False) * data)).astype(F32, copy=False)
