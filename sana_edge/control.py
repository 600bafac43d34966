"""ControlNet: the exported SanaControlNetModel runs before the transformer at every step and
hands it one residual per block (SanaControlNetPipeline). An export with a controlnet has a
transformer graph that takes those residuals; without a control image it is fed zeros, which
adds nothing, so the export also runs plain text-to-image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .components import CONTROLNET, TRANSFORMER
from .errors import UserError

SAMPLES = "controlnet_block_samples"


class ControlFeeds:
    """`feeds(transformer_feeds)` -> the transformer's controlnet input for that call.

    `control` is the control image's latents (encoder output x VAE scaling), or None;
    `session(name)` returns the loaded session of a component (the pipeline's)."""

    def __init__(self, model, session: Callable, control: np.ndarray | None, scale: float):
        self.model = model
        self._session = session
        self.control = control
        self.scale = np.array([scale], np.float32)
        self._zeros: np.ndarray | None = None

    def feeds(self, transformer_feeds: dict) -> dict:
        latents = transformer_feeds["latents"]
        batch, _, height, width = latents.shape
        if self.control is None:
            shape = (self.model.controlnet_layers, batch, height, width, self.model.transformer_inner_dim)
            if self._zeros is None or self._zeros.shape != shape:
                self._zeros = np.zeros(shape, np.float32)
            return {SAMPLES: self._zeros}
        inputs = {name: transformer_feeds[name] for name in CONTROLNET.input_names if name in transformer_feeds}
        inputs["controlnet_cond"] = np.repeat(self.control, batch, axis=0)  # as the pipeline doubles it for CFG
        inputs["conditioning_scale"] = self.scale
        return {SAMPLES: self._session(CONTROLNET.name).run(inputs)[SAMPLES]}


def has_controlnet(manifest) -> bool:
    return SAMPLES in manifest.spec(TRANSFORMER.name).input_names


def check_control(manifest, scale: float) -> None:
    """Refuse a control image this export cannot use, before any work."""
    if not has_controlnet(manifest):
        raise UserError(f"--control-image needs a controlnet, which this export ({manifest.root}) lacks; "
                        "export one with `sana-edge export CHECKPOINT --controlnet CONTROLNET_DIR -o DIR`")
    if not (isinstance(scale, (int, float)) and np.isfinite(scale)):
        raise UserError(f"--control-scale must be a finite number (got {scale})")


def control_feeds(manifest, session: Callable, control: np.ndarray | None, scale: float) -> Callable | None:
    """The per-call feed hook for this export, or None when its transformer takes no control."""
    if not has_controlnet(manifest):
        return None
    return ControlFeeds(manifest.model, session, control, scale).feeds
