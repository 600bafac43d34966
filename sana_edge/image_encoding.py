"""Input images (image-to-image, ControlNet): read and checked, then encoded to latents with the
exported DC-AE encoder, in overlapping tiles when the memory plan asks for it.

Pixels are prepared as diffusers' image processor prepares them: RGB, resized with Lanczos when a
size is asked for, scaled to [-1, 1]. An image whose sides are not multiples of the VAE factor
(32) is refused unless --height/--width say what to resize it to (diffusers floors it silently).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .checks import check_image_side
from .components import ENCODER
from .errors import UserError
from .tiling import encode_tiled


def _open(source, label: str):
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise UserError(f"{label} array must be H x W x 3 uint8 (got {source.shape} {source.dtype})")
        return Image.fromarray(source)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{label} '{path}' does not exist or is not a file; pass a PNG or JPEG image")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{label} '{path}' is not an image this machine can read ({type(exc).__name__}); "
                        "pass a PNG or JPEG file") from None


def image_size(source, label: str = "--image") -> tuple[int, int]:
    """(height, width) in px of an image file, PIL image or H x W x 3 array."""
    image = _open(source, label)
    return image.height, image.width


def load_image(source, height: int | None = None, width: int | None = None, factor: int = 32,
               label: str = "--image") -> np.ndarray:
    """(1, 3, H, W) float32 pixels in [-1, 1]. Without a size the image keeps its own, which must
    be a multiple of `factor` on both sides; with one, it is resized to it (Lanczos, as diffusers)."""
    from PIL import Image

    image = _open(source, label)
    if height is None and width is None:
        if image.height % factor or image.width % factor:
            fit_h, fit_w = (max(factor, round(s / factor) * factor) for s in (image.height, image.width))
            raise UserError(f"{label} is {image.width}x{image.height} px, not a multiple of {factor} on each side; "
                            f"pass --width {fit_w} --height {fit_h} to resize it (or crop it yourself)")
        height, width = image.height, image.width
    height, width = height or image.height, width or image.width
    check_image_side("height", height, factor)
    check_image_side("width", width, factor)
    if (image.height, image.width) != (height, width):
        image = image.resize((width, height), resample=Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return (np.float32(2.0) * pixels - np.float32(1.0)).transpose(2, 0, 1)[None].copy()


class ImageEncoder:
    """Pixels -> latents in the sampler's space (encoder output x the VAE scaling factor).

    `session(name, low_memory)` returns the loaded session of a component (the pipeline's)."""

    def __init__(self, manifest, session: Callable):
        self.manifest = manifest
        self._session = session

    def available(self) -> bool:
        return ENCODER.name in self.manifest.components

    def require(self, option: str) -> None:
        if not self.available():
            raise UserError(f"{option} needs the VAE encoder, which this export ({self.manifest.root}) lacks; "
                            "re-export the checkpoint with this sana-edge (`sana-edge export CHECKPOINT -o DIR`)")

    def encode(self, pixels: np.ndarray, tile: int | None = None) -> np.ndarray:
        session = self._session(ENCODER.name, low_memory=tile is not None)

        def run(part):
            return session.run({ENCODER.input_names[0]: part})[ENCODER.output_names[0]]

        model = self.manifest.model
        latent = run(pixels) if tile is None else encode_tiled(run, pixels, tile, model.vae_scale_factor)
        return (latent * np.float32(model.vae_scaling_factor)).astype(np.float32, copy=False)
