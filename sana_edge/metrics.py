"""Fidelity metrics, numpy only and pure: cosine, SQNR, PSNR, SSIM, and a strict-JSON helper.

Export validation (sana_edge.export.validate), `sana-edge eval` (sana_edge.evaluation), the
quantization benchmarks and the tests all measure with these.
"""

from __future__ import annotations

import math

import numpy as np

# -- metrics (float64 throughout: fp32 accumulation would itself cost SQNR at these sizes) ----


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if np.array_equal(a, b):
        return 1.0  # exact, instead of 1 +- rounding of the norms
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB (+inf if equal)."""
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - np.asarray(test, np.float64)) ** 2))
    if noise == 0.0:
        return math.inf
    signal = float(np.sum(reference**2))
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def psnr(ref_uint8: np.ndarray, test_uint8: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images, peak 255 (+inf if equal)."""
    mse = float(np.mean((np.asarray(ref_uint8, np.float64) - np.asarray(test_uint8, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D 'valid' correlation over the last two axes (scipy is not a dependency).

    'valid' (no padding) is the original SSIM definition: border windows see no invented pixels.
    """
    k = len(window)
    rows = sum(w * x[..., i : x.shape[-2] - k + 1 + i, :] for i, w in enumerate(window))
    return sum(w * rows[..., i : x.shape[-1] - k + 1 + i] for i, w in enumerate(window))


def ssim(ref_uint8: np.ndarray, test_uint8: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian window 11/1.5, K1=0.01, K2=0.03, L=255.

    Images are (H, W) or (H, W, C); computed per channel and averaged.
    """
    ref = np.asarray(ref_uint8, np.float64)
    test = np.asarray(test_uint8, np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"ssim needs images of one shape, got {ref.shape} and {test.shape}")
    if np.array_equal(ref, test):
        return 1.0
    if ref.ndim == 2:
        ref, test = ref[..., None], test[..., None]
    window = _gaussian_window()
    if min(ref.shape[:2]) < len(window):
        raise ValueError(f"ssim needs images of at least {len(window)}x{len(window)} px, got {ref.shape[:2]}")
    x, y = ref.transpose(2, 0, 1), test.transpose(2, 0, 1)  # channels first: filter the last two axes
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
    var_x = _filter_valid(x * x, window) - mu_x**2
    var_y = _filter_valid(y * y, window) - mu_y**2
    cov = _filter_valid(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(np.mean(ssim_map.mean(axis=(1, 2))))


def json_safe(value):
    """inf -> "inf", -inf -> "-inf", nan -> None, recursively: the file stays strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    elif isinstance(value, np.integer):
        return int(value)
    return value
