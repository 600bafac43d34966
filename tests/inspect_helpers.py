"""Inspection helpers used only by the tests: what a quantized graph quantized, where tile seams
fall and how visible they are."""

from __future__ import annotations

import numpy as np

from sana_edge.tiling import tile_starts

QUANTIZED_OPS = {"MatMulNBits", "GatherBlockQuantized", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearConv"}


def activation_quantized_nodes(model) -> set[str]:
    """Compute nodes that run on quantized activations (W8A8): MatMul/Conv/Gemm whose data input
    comes through a DequantizeLinear, or onnxruntime's integer ops."""
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {
        n.name for n in model.graph.node
        if n.op_type in {"QLinearMatMul", "QLinearConv", "MatMulInteger", "DynamicQuantizeMatMul"}
        or (n.op_type in ("MatMul", "Conv", "Gemm") and n.input[0] in dq_outputs)
    }


def quantized_nodes(model) -> set[str]:
    """Names of the compute nodes that run on quantized weights: contrib int ops, or MatMul/Conv/
    Gemm whose weight input comes from a DequantizeLinear (QDQ form)."""
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    found = set()
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            found.add(node.name)
        elif node.op_type in ("MatMul", "Conv", "Gemm") and len(node.input) > 1 and node.input[1] in dq_outputs:
            found.add(node.name)
    return found


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(row start, column start) of every tile, in latent units."""
    return [(y, x) for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


def seam_ratio(image: np.ndarray, seams_y: list[int], seams_x: list[int], band: int = 2) -> float:
    """Mean gradient energy on the tile seams over the mean elsewhere (about 1 when invisible).

    `image` is (3, H, W) or (H, W, 3); seams are pixel rows/columns where a tile edge fell (the
    blend makes the transition gradual, so the worst place for a step is the overlap's edges)."""
    array = np.asarray(image, np.float64)
    if array.shape[0] == 3:
        array = np.moveaxis(array, 0, -1)
    gy = np.abs(np.diff(array, axis=0)).sum(-1)  # (H-1, W): step between row r and r+1
    gx = np.abs(np.diff(array, axis=1)).sum(-1)  # (H, W-1)
    on_y = np.zeros(gy.shape[0], bool)
    on_x = np.zeros(gx.shape[1], bool)
    for row in seams_y:
        on_y[max(0, row - band): row + band] = True
    for col in seams_x:
        on_x[max(0, col - band): col + band] = True
    seam = np.concatenate([gy[on_y].ravel(), gx[:, on_x].ravel()])
    rest = np.concatenate([gy[~on_y].ravel(), gx[:, ~on_x].ravel()])
    return float(seam.mean() / max(rest.mean(), 1e-12))


def seam_positions(length: int, tile: int, overlap: int, factor: int) -> list[int]:
    """Pixel positions of every tile edge inside the image (where a seam would show)."""
    starts = tile_starts(length, tile, overlap)
    edges = {s * factor for s in starts[1:]} | {(s + tile) * factor for s in starts[:-1]}
    return sorted(edges)
