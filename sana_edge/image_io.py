"""Decoder output -> PIL image (as diffusers' postprocess), and atomic PNG writing with metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def to_pil(image: np.ndarray):
    """(1, 3, H, W) decoder output in [-1, 1] -> PIL RGB, rounding as diffusers' numpy_to_pil."""
    from PIL import Image

    pixels = np.clip(image[0].astype(np.float32) * 0.5 + 0.5, 0.0, 1.0).transpose(1, 2, 0)
    return Image.fromarray((pixels * 255).round().astype(np.uint8))


def png_bytes(image, metadata: dict | None = None) -> bytes:
    """The image as PNG bytes, metadata in `sana-edge:<key>` text chunks (as save_png writes)."""
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(f"sana-edge:{key}", str(value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(image, path: str | Path, metadata: dict | None = None) -> Path:
    """Write `image` to `path` through a temp file and rename, so no half-written PNG remains."""
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(f"sana-edge:{key}", str(value))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        image.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
