"""Tiled DC-AE decoding: a large latent decodes as overlapping tiles of one fixed size, blended
with linear ramps across each overlap, so decoder memory follows the tile, not the image.

Every tile has the same shape (the last tile in a row or column is shifted back inside the
image), so a TensorRT decoder engine built for the tile size serves any image size and the
per-tile run can replay one CUDA graph. DC-AE's decoder normalises per pixel (RMSNorm), but its
EfficientViT blocks attend over the whole input, so tiles are not bit-identical to an untiled
decode: the overlap and the ramps hide the difference (see tests/test_tiling.py for the
measured tolerance and the seam metric).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def default_overlap(tile: int) -> int:
    """Latent positions shared by neighbouring tiles: an eighth of the tile, at least 1."""
    return max(1, tile // 8)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile`, neighbours sharing >= overlap."""
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile {tile})")
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _axis_weights(starts: list[int], index: int, tile: int, factor: int) -> np.ndarray:
    """1-D blend weights (px) of tile `index`: ramps up over the overlap with the previous tile
    and down over the overlap with the next; 1 elsewhere. Never 0, so every pixel is covered."""
    size = tile * factor
    weights = np.ones(size, np.float32)
    ramp_in = (starts[index - 1] + tile - starts[index]) * factor if index > 0 else 0
    ramp_out = (starts[index] + tile - starts[index + 1]) * factor if index + 1 < len(starts) else 0
    if ramp_in:
        weights[:ramp_in] = np.minimum(weights[:ramp_in], (np.arange(ramp_in) + 0.5) / ramp_in)
    if ramp_out:
        weights[size - ramp_out:] = np.minimum(weights[size - ramp_out:], (np.arange(ramp_out)[::-1] + 0.5) / ramp_out)
    return weights


def decode_tiled(
    decode: Callable[[np.ndarray], np.ndarray], latent: np.ndarray, tile: int, factor: int,
    overlap: int | None = None, on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Decode `latent` (1, C, h, w) tile by tile; `decode` maps (1, C, th, tw) -> (1, 3, th*f, tw*f)."""
    _, _, height, width = latent.shape
    if height <= tile and width <= tile:
        return decode(latent)
    overlap = default_overlap(tile) if overlap is None else overlap
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)
    out = np.zeros((1, 3, height * factor, width * factor), np.float32)
    total = np.zeros((height * factor, width * factor), np.float32)
    done = 0
    for i, y in enumerate(rows):
        wy = _axis_weights(rows, i, th, factor)
        for j, x in enumerate(cols):
            wx = _axis_weights(cols, j, tw, factor)
            image = decode(np.ascontiguousarray(latent[:, :, y:y + th, x:x + tw]))
            weight = wy[:, None] * wx[None, :]
            ys, xs = slice(y * factor, (y + th) * factor), slice(x * factor, (x + tw) * factor)
            out[:, :, ys, xs] += image * weight
            total[ys, xs] += weight
            done += 1
            if on_tile:
                on_tile(done, len(rows) * len(cols))
    out /= total
    return out


def encode_tiled(
    encode: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: int, factor: int,
    overlap: int | None = None, on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Encode `image` (1, 3, H, W) in overlapping tiles of `tile` latent positions (tile x factor px);
    `encode` maps (1, 3, th*f, tw*f) -> (1, C, th, tw). The latent tiles are blended with the same
    linear ramps as decode_tiled, in latent space, so encoder memory follows the tile."""
    _, _, height_px, width_px = image.shape
    height, width = height_px // factor, width_px // factor
    if height <= tile and width <= tile:
        return encode(image)
    overlap = default_overlap(tile) if overlap is None else overlap
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)
    out, total = None, np.zeros((height, width), np.float32)
    done = 0
    for i, y in enumerate(rows):
        wy = _axis_weights(rows, i, th, 1)
        for j, x in enumerate(cols):
            wx = _axis_weights(cols, j, tw, 1)
            pixels = image[:, :, y * factor:(y + th) * factor, x * factor:(x + tw) * factor]
            latent = encode(np.ascontiguousarray(pixels))
            if out is None:
                out = np.zeros((1, latent.shape[1], height, width), np.float32)
            weight = wy[:, None] * wx[None, :]
            out[:, :, y:y + th, x:x + tw] += latent * weight
            total[y:y + th, x:x + tw] += weight
            done += 1
            if on_tile:
                on_tile(done, len(rows) * len(cols))
    return out / total
