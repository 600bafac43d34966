"""Decoder output -> PIL image (as diffusers' postprocess), and atomic PNG writing with metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .fileio import write_atomic


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
    """Write `image` to `path` through a unique temp sibling and a rename (sana_edge.fileio), so no
    half-written PNG remains and parallel writers to one path leave one of their images whole."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(f"sana-edge:{key}", str(value))
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))
