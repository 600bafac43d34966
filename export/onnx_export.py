"""Torch -> ONNX for each declared component, plus the graph repairs the export needs.

Route (see FIELD_NOTES.md): the TorchScript exporter (`dynamo=False`) handles all three SANA
modules; its one trap is DC-AE's `movedim(1, -1)`, which becomes a Transpose with a negative perm
that onnxruntime refuses, repaired here on the graph. This route never runs the onnxscript
optimizer, whose no-op rule deletes the linear-attention `+ 1e-15` (checked by `count_eps`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sana_edge.components import ComponentSpec

OPSET = 17
LINEAR_ATTENTION_EPS = 1e-15
# Protobuf cannot serialise a model over 2 GiB; stay clear of it with some headroom.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def export_component(spec: ComponentSpec, module, dims: dict, path: Path) -> int:
    """Export `module` to `path` (one .onnx, plus one .onnx.data file when over 2 GB); returns how
    many linear-attention eps constants the graph holds (counted before it leaves memory)."""
    import onnx
    import torch

    from sana_edge.components import sample_inputs

    feeds = sample_inputs(spec, {**dims, **spec.validation_shapes[0]})
    args = tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)
    scratch = path.parent / f".{path.stem}-trace"
    scratch.mkdir(parents=True, exist_ok=True)
    traced = scratch / path.name
    with torch.no_grad(), warnings.catch_warnings():
        # tracer chatter about Python bools/constants; the validation step is what we trust
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(traced), input_names=spec.input_names, output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(), opset_version=OPSET, dynamo=False,
        )
    model = onnx.load(str(traced))  # pulls the exporter's one-file-per-tensor data back in
    fix_negative_transpose_perms(model)
    spec.check_io_names([i.name for i in model.graph.input], [o.name for o in model.graph.output], str(path))
    save_model(model, path)
    for leftover in scratch.iterdir():
        leftover.unlink()
    scratch.rmdir()
    return count_eps(model)


def save_model(model, path: Path) -> None:
    """Save as one file, or with all weights in a single `<name>.data` file when over 2 GB."""
    import onnx

    data_file = path.with_name(path.name + ".data")
    data_file.unlink(missing_ok=True)
    if initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=data_file.name, size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def initializer_bytes(model) -> int:
    from onnx import numpy_helper

    total = 0
    for tensor in model.graph.initializer:
        total += len(tensor.raw_data) if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).nbytes
    return total


def fix_negative_transpose_perms(model) -> int:
    """Rewrite Transpose perms like (0, -1, 1, 2) to (0, 3, 1, 2); returns how many changed."""
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Transpose":
            continue
        for attr in node.attribute:
            if attr.name == "perm" and any(p < 0 for p in attr.ints):
                rank = len(attr.ints)
                fixed = [p + rank if p < 0 else p for p in attr.ints]
                del attr.ints[:]
                attr.ints.extend(fixed)
                changed += 1
    return changed


def count_eps(model, eps: float = LINEAR_ATTENTION_EPS) -> int:
    """How many constants in the graph equal the linear-attention epsilon (any float dtype)."""
    import onnx
    from onnx import numpy_helper

    def matches(tensor) -> bool:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or int(np.prod(tensor.dims)) != 1:
            return False  # weights, never the eps (and never converted: they may be gigabytes)
        values = numpy_helper.to_array(tensor)
        return bool(values.size == 1 and np.isclose(float(values.reshape(-1)[0]), eps, rtol=1e-3, atol=0))

    found = sum(matches(t) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            found += sum(matches(a.t) for a in node.attribute if a.name == "value")
    return int(found)


def as_fp16(module):
    """Cast the module's weights to fp16 in place, keeping fp32 graph inputs and outputs so the
    feed contract does not change. SANA's linear attentions upcast to fp32 inside PyTorch
    (eps 1e-15 and token sums need it), so the traced graph keeps that math in fp32 too."""
    import torch

    class Fp16Boundary(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner.half()

        def forward(self, *args):
            args = [a.half() if a.is_floating_point() else a for a in args]
            outputs = self.inner(*args)
            if isinstance(outputs, (tuple, list)):
                return tuple(o.float() for o in outputs)
            return outputs.float()

    return Fp16Boundary(module).eval()
