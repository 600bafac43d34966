"""Exported graphs: validated against PyTorch, eps kept, dynamic axes, fp16, external data."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.components import COMPONENTS, SPLIT_GRAPH, TRANSFORMER_STEP
from sana_edge.export import onnx_export
from sana_edge.export.exporter import ExportOptions, export_checkpoint
from sana_edge.manifest import load_manifest, sha256_file


def test_manifest_records_validation_and_model_values(tiny_export):
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["precision"] == "fp32"
    assert set(manifest["components"]) == set(SPLIT_GRAPH)
    for name, entry in manifest["components"].items():
        shapes = {json.dumps(v["shape"], sort_keys=True) for v in entry["validation"]}
        assert len(shapes) >= 2, name
        for check in entry["validation"]:
            assert check["finite"] and check["cosine"] >= 0.9999, (name, check)
        assert entry["sha256"] == sha256_file(tiny_export / entry["file"])
    model = manifest["model"]
    assert model["latent_channels"] == 32 and model["vae_scale_factor"] == 32
    assert model["vae_scaling_factor"] == pytest.approx(0.41407) and model["flow_shift"] == 3.0
    assert model["max_sequence_length"] == 300 and model["complex_human_instruction"][-1] == "User Prompt: "
    assert {"torch", "diffusers", "onnx", "onnxruntime"} <= set(manifest["tool_versions"])


@pytest.mark.parametrize("name", ["transformer_step", "vae_decoder"])
def test_linear_attention_eps_survives_export(tiny_export, name):
    model = onnx.load(str(tiny_export / f"{name}.onnx"))
    assert onnx_export.count_eps(model) >= 1
    # the check itself can fail: zero the constants and it finds none
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and onnx_export.count_eps(_graph_with(attr.t)):
                    attr.t.CopyFrom(onnx.numpy_helper.from_array(np.zeros((), np.float32)))
    for tensor in model.graph.initializer:
        if onnx_export.count_eps(_graph_with(tensor)):
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.zeros((), np.float32), tensor.name))
    assert onnx_export.count_eps(model) == 0


def _graph_with(tensor):
    return onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [], initializer=[tensor]))


def test_graph_axes_are_dynamic_as_declared(tiny_export):
    for spec in (COMPONENTS[name] for name in SPLIT_GRAPH):
        graph = onnx.load(str(tiny_export / spec.file)).graph
        inputs = {i.name: i for i in graph.input}
        assert list(inputs) == spec.input_names
        for tensor in spec.inputs:
            dims = inputs[tensor.name].type.tensor_type.shape.dim
            for axis, dim in zip(tensor.axes, dims):
                if axis in spec.dynamic:
                    assert dim.dim_param, (spec.name, tensor.name, axis)
                else:
                    assert dim.dim_value > 0, (spec.name, tensor.name, axis)


def test_negative_transpose_perm_is_normalised():
    node = onnx.helper.make_node("Transpose", ["x"], ["y"], perm=[0, -1, 1, 2])
    graph = onnx.helper.make_graph([node], "g", [], [])
    model = onnx.helper.make_model(graph)
    assert onnx_export.fix_negative_transpose_perms(model) == 1
    assert list(model.graph.node[0].attribute[0].ints) == [0, 3, 1, 2]


def test_fp16_export_validates_and_runs(tiny_checkpoint, tiny_export, tmp_path):
    out = export_checkpoint(ExportOptions(str(tiny_checkpoint), tmp_path / "fp16", precision="fp16"), log=lambda _: None)
    manifest = load_manifest(out)
    assert manifest.precision == "fp16"
    for name, entry in manifest.components.items():
        assert all(v["cosine"] >= 0.999 for v in entry["validation"]), name
        weights = [t for t in onnx.load(str(out / entry["file"])).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
        assert weights, f"{name} has no fp16 weights"
    assert onnx_export.count_eps(onnx.load(str(out / "transformer_step.onnx"))) >= 1
    latents = np.random.default_rng(0).standard_normal((1, 32, 4, 4)).astype(np.float32)
    fp16 = np.asarray(SanaEdgePipeline.from_export(out)("a fox", height=128, width=128, steps=4, latents=latents)).astype(int)
    fp32 = np.asarray(SanaEdgePipeline.from_export(tiny_export)("a fox", height=128, width=128, steps=4, latents=latents)).astype(int)
    assert np.abs(fp16 - fp32).mean() < 2.0


def test_large_graphs_use_one_external_data_file(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 10_000)
    out = export_checkpoint(ExportOptions(str(tiny_checkpoint), tmp_path / "ext"), log=lambda _: None)
    manifest = load_manifest(out)
    with_data = {name for name, entry in manifest.components.items() if entry.get("external_data")}
    assert {"text_encoder", "transformer_step", "vae_decoder"} <= with_data  # the small caption graph may not be
    for name in with_data:
        assert list(manifest.components[name]["external_data"]) == [f"{name}.onnx.data"]
    assert sorted(p.name for p in out.glob("*.data")) == sorted(f"{n}.onnx.data" for n in with_data)
    image = SanaEdgePipeline.from_export(out)("a fox", height=64, width=64, steps=2, seed=0)
    assert image.size == (64, 64)


def test_validation_failure_aborts_and_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    from sana_edge.export.validate import ExportValidationError

    monkeypatch.setitem(TRANSFORMER_STEP.min_cosine, "fp32", 1.5)  # unreachable
    out = tmp_path / "failed"
    with pytest.raises(ExportValidationError, match="transformer"):
        export_checkpoint(ExportOptions(str(tiny_checkpoint), out), log=lambda _: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
