"""SmoothQuant (Xiao et al. 2023) on an ONNX graph: move activation outliers into the weights.

For every activation tensor X feeding quantized linear layers (MatMul with a constant weight, or
a 1x1 Conv), per input channel k:  s_k = max|X_k|^alpha / max|W_k|^(1 - alpha);  X' = X / s
(a Mul inserted once per tensor, shared by all its consumers), W'_k = W_k * s_k.  The fp32 graph
computes the same function before and after (tested); int8 then sees flatter activations.
onnxruntime's built-in SmoothQuant needs Intel Neural Compressor, which is not a dependency here.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import graph


def _smoothable(model, excluded: set[str]) -> dict[str, list]:
    """activation tensor name -> consumer nodes that can absorb a per-input-channel scale."""
    initializers = {t.name for t in model.graph.initializer}
    groups: dict[str, list] = defaultdict(list)
    for node in model.graph.node:
        if node.name in excluded or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        if node.op_type == "MatMul":
            groups[node.input[0]].append(node)
        elif node.op_type == "Conv" and graph._attr(node, "group", 1) == 1:
            groups[node.input[0]].append(node)
    # a tensor feeding both kinds (or anything else) cannot take one scale layout: skip it
    consumers = defaultdict(int)
    for node in model.graph.node:
        for name in node.input:
            consumers[name] += 1
    return {
        name: nodes for name, nodes in groups.items()
        if len({n.op_type for n in nodes}) == 1 and consumers[name] == len(nodes)
    }


def channel_abs_max(model, tensors: dict[str, str], feeds: list[dict]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each tensor over the calibration feeds. `tensors` maps name ->
    layout ("last" for MatMul inputs, "nchw" for Conv inputs). The tensors become graph outputs
    only while an ORT session is built from `model`, then the graph is restored."""
    import onnx
    import onnxruntime as ort

    from sana_edge.export.onnx_export import EXTERNAL_DATA_THRESHOLD, initializer_bytes, save_model

    existing = {o.name for o in model.graph.output}
    added = [onnx.helper.make_empty_tensor_value_info(name) for name in tensors if name not in existing]
    model.graph.output.extend(added)
    try:
        if initializer_bytes(model) <= EXTERNAL_DATA_THRESHOLD:
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        else:  # protobuf cannot serialise past 2 GB in memory: go through a file with external data
            with tempfile.TemporaryDirectory(prefix="sana-edge-smoothquant-") as scratch:
                probe = Path(scratch) / "probe.onnx"
                save_model(model, probe)
                session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
    finally:
        for _ in added:
            model.graph.output.pop()
    names = list(tensors)
    maxima: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            axes = tuple(i for i in range(value.ndim) if i != (1 if tensors[name] == "nchw" else value.ndim - 1))
            current = np.abs(value).max(axis=axes)
            maxima[name] = current if name not in maxima else np.maximum(maxima[name], current)
    return maxima


def smooth(model, feeds: list[dict], alpha: float, excluded: set[str]) -> int:
    """Apply SmoothQuant in place to `model`; returns how many tensors were smoothed."""
    from onnx import helper, numpy_helper

    groups = _smoothable(model, excluded)
    layouts = {name: ("nchw" if nodes[0].op_type == "Conv" else "last") for name, nodes in groups.items()}
    act_max = channel_abs_max(model, layouts, feeds)
    weights = {t.name: t for t in model.graph.initializer}
    new_mul = {}
    for name, nodes in groups.items():
        arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        # input-channel axis: 0 for MatMul weights (K, N), 1 for Conv weights (O, C, 1, 1)
        w_max = np.max([np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != (1 if w.ndim == 4 else 0))) for w in arrays], axis=0)
        scale = np.power(np.maximum(act_max[name], 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1.0 - alpha)
        scale = np.clip(scale, 1e-4, 1e4).astype(np.float32)
        for node, w in zip(nodes, arrays):
            shaped = scale.reshape((1, -1, 1, 1) if w.ndim == 4 else (-1, 1))
            weights[node.input[1]].CopyFrom(numpy_helper.from_array((w * shaped).astype(w.dtype), node.input[1]))
        inverse = (1.0 / scale).reshape((1, -1, 1, 1) if layouts[name] == "nchw" else (-1,))
        inv_name, out_name = f"{name}/smoothquant_inv_scale", f"{name}/smoothed"
        model.graph.initializer.append(numpy_helper.from_array(inverse.astype(np.float32), inv_name))
        new_mul[name] = helper.make_node("Mul", [name, inv_name], [out_name], name=f"{name}/SmoothQuant/Mul")
        for node in nodes:
            node.input[0] = out_name
    # insert each Mul right before its first consumer, keeping the node list topologically sorted
    ordered, placed = [], set()
    for node in model.graph.node:
        for name in node.input:
            source = name[: -len("/smoothed")] if name.endswith("/smoothed") else None
            if source in new_mul and source not in placed:
                ordered.append(new_mul[source])
                placed.add(source)
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return len(groups)
