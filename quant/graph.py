"""Graph helpers for quantization: node selection by name pattern, 1x1-conv -> MatMul rewrite,
opset upgrade, int8 weight storage."""

from __future__ import annotations

import re

import numpy as np


def matching_nodes(model, patterns) -> list[str]:
    compiled = [re.compile(p) for p in patterns]
    return [n.name for n in model.graph.node if any(p.search(n.name) for p in compiled)]


def _attr(node, name, default):
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def pointwise_convs_to_matmul(model) -> int:
    """Rewrite 1x1 convolutions with constant weights (Mix-FFN's inverted and point convs) as
    Transpose -> MatMul -> Add -> Transpose, so weight-only quantizers that handle MatMul alone
    (MatMulNBits) reach the FFN weights, which are most of the DiT's parameters.
    New nodes keep the conv's name as prefix so name-pattern exclusions still apply."""
    from onnx import helper, numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    new_nodes, rewritten = [], 0
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is None or list(weight.dims[2:]) != [1, 1] or _attr(node, "group", 1) != 1 \
                or any(s != 1 for s in _attr(node, "strides", [1, 1])) or any(_attr(node, "pads", [0, 0, 0, 0])):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)[:, :, 0, 0]  # (O, C)
        prefix = node.name or node.output[0]
        w_name = f"{prefix}/as_matmul/weight"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T), w_name))
        nhwc, product = f"{prefix}/as_matmul/nhwc", f"{prefix}/as_matmul/product"
        new_nodes.append(helper.make_node("Transpose", [node.input[0]], [nhwc], name=f"{prefix}/as_matmul/Transpose_in", perm=[0, 2, 3, 1]))
        new_nodes.append(helper.make_node("MatMul", [nhwc, w_name], [product], name=f"{prefix}/as_matmul/MatMul"))
        if len(node.input) > 2 and node.input[2]:
            biased = f"{prefix}/as_matmul/biased"
            new_nodes.append(helper.make_node("Add", [product, node.input[2]], [biased], name=f"{prefix}/as_matmul/Add"))
            product = biased
        new_nodes.append(helper.make_node("Transpose", [product], [node.output[0]], name=f"{prefix}/as_matmul/Transpose_out", perm=[0, 3, 1, 2]))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    if rewritten:
        # Drop the replaced Conv weights in place: copying initializers (extend) serializes each
        # one, which protobuf refuses over 2 GB (Gemma-2-2B's fp32 embedding table is 2.4 GB).
        used = {i for n in model.graph.node for i in n.input}
        for index in reversed(range(len(model.graph.initializer))):
            if model.graph.initializer[index].name not in used:
                del model.graph.initializer[index]
    return rewritten


_REDUCE_WITH_AXES_INPUT_FROM_18 = {
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
}


def upgrade_to_opset_21(model) -> None:
    """Raise the default-domain opset to 21 (int4 types, blocked DequantizeLinear) in place.

    onnx.version_converter would do this but serialises the model, which fails past 2 GB (the
    full Gemma-2 graph); for the ops in SANA's graphs the only change between opsets 17 and 21
    is Reduce* taking `axes` as an input instead of an attribute, which is rewritten here."""
    from onnx import helper, numpy_helper

    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if opset.version >= 21:
                return
            opset.version = 21
    for node in model.graph.node:
        if node.op_type not in _REDUCE_WITH_AXES_INPUT_FROM_18:
            continue
        axes = [a for a in node.attribute if a.name == "axes"]
        if not axes:
            continue
        values = np.asarray(helper.get_attribute_value(axes[0]), dtype=np.int64)
        name = f"{node.name or node.output[0]}/axes"
        model.graph.initializer.append(numpy_helper.from_array(values, name))
        node.attribute.remove(axes[0])
        while len(node.input) < 1:
            node.input.append("")
        node.input.insert(1, name)
    if model.ir_version < 10:
        model.ir_version = 10


def store_weights_int8(model, node_names: set[str]) -> int:
    """Weight-only int8 storage for the given float nodes: their constant weight becomes a
    per-output-channel symmetric int8 initializer behind a DequantizeLinear. The node still
    computes in floating point on float activations; only the stored weight is 8-bit. Used for
    the layers W8A8 keeps out (their activations are what is sensitive), so that keeping them
    does not keep the file large (the adaLN timestep MLP alone is 1152 x 6912)."""
    from onnx import helper, numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    new_nodes, converted = [], 0
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if node.name not in node_names or node.op_type not in ("MatMul", "Gemm", "Conv") or weight is None \
                or consumers[weight.name] != 1 or weight.data_type != 1 or len(weight.dims) < 2:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        transposed = node.op_type == "Gemm" and _attr(node, "transB", 0)
        axis = 1 if node.op_type == "MatMul" or (node.op_type == "Gemm" and not transposed) else 0
        reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
        scale = np.maximum(np.abs(w).max(axis=reduce_axes), 1e-12) / 127.0
        shaped = scale.reshape([-1 if i == axis else 1 for i in range(w.ndim)])
        q = np.clip(np.round(w / shaped), -127, 127).astype(np.int8)
        base = f"{node.name}/weight_int8"
        model.graph.initializer.extend([
            numpy_helper.from_array(q, f"{base}/quantized"),
            numpy_helper.from_array(scale.astype(np.float32), f"{base}/scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}/zero_point"),
        ])
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{base}/quantized", f"{base}/scale", f"{base}/zero_point"], [f"{base}/dequantized"],
            name=f"{base}/DequantizeLinear", axis=axis))
        node.input[1] = f"{base}/dequantized"
        new_nodes.append(node)
        model.graph.initializer.remove(weight)
        converted += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return converted
