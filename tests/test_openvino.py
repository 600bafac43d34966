"""The OpenVINO backend (the `openvino` extra): same images as ONNX Runtime, compiled-model cache,
and one-line errors for a missing device or a missing extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.cli import main

ov = pytest.importorskip("openvino")

SIZE = 128


def _image(export, backend, **options):
    latents = np.random.default_rng(5).standard_normal((1, 32, SIZE // 32, SIZE // 32)).astype(np.float32)
    pipe = SanaEdgePipeline.from_export(export, backend=backend, **options)
    result = pipe.generate("a red fox in the snow", negative_prompt="blurry", height=SIZE, width=SIZE, steps=4,
                           latents=latents)
    return np.asarray(result.image).astype(np.int16), result


def test_openvino_image_equals_onnxruntime_at_fp32(tiny_export, tmp_path, monkeypatch):
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    reference, _ = _image(tiny_export, "onnxruntime")
    got, result = _image(tiny_export, "openvino")
    assert got.std() > 1
    assert np.abs(got - reference).max() <= 2
    assert set(result.memory) == {"text_encoder", "transformer", "vae_decoder"}
    assert all(peak > 0 for peak in result.memory.values())  # per-stage RSS for the planner


def test_openvino_sessions_follow_the_feed_contract(tiny_export, tmp_path, monkeypatch):
    from sana_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from sana_edge.backends.openvino_backend import OpenVINOBackend
    from sana_edge.components import COMPONENTS, sample_inputs
    from sana_edge.manifest import load_manifest

    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    manifest = load_manifest(tiny_export)
    dims = {**manifest.model.dims(), "vocab_size": 64}
    for name, spec in ((n, COMPONENTS[n]) for n in manifest.components):
        feeds = sample_inputs(spec, {**dims, **spec.validation_shapes[1]})
        ov_out = OpenVINOBackend().load_component(manifest, name).run(feeds)
        ort_out = OnnxRuntimeBackend().load_component(manifest, name).run(feeds)
        assert list(ov_out) == spec.output_names
        for key in spec.output_names:
            assert ov_out[key].shape == ort_out[key].shape
            np.testing.assert_allclose(ov_out[key], ort_out[key], atol=1e-4, rtol=1e-4)


def test_compiled_models_are_cached_per_graph_hash(tiny_export, tmp_path, monkeypatch):
    from sana_edge.backends.openvino_backend import OpenVINOBackend, cache_root
    from sana_edge.manifest import load_manifest

    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    manifest = load_manifest(tiny_export)
    OpenVINOBackend().load_component(manifest, "transformer_step")
    folder = cache_root() / manifest.components["transformer_step"]["sha256"][:16]
    blobs = list(folder.glob("*.blob"))
    assert len(blobs) == 1 and blobs[0].stat().st_size > 0
    OpenVINOBackend().load_component(manifest, "transformer_step")  # a second compile reads the blob
    assert list(folder.glob("*.blob")) == blobs
    OpenVINOBackend(cache=False).load_component(manifest, "vae_decoder")
    assert not (cache_root() / manifest.components["vae_decoder"]["sha256"][:16]).exists()


def _one_line_error(capsys, args, *needles):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_device_that_is_not_there(capsys, tiny_export, tmp_path):
    if any(d.startswith("NPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an NPU")
    _one_line_error(capsys, ["run", "a fox", "--model", tiny_export, "-o", tmp_path / "x.png", "--backend", "openvino",
                             "--device", "NPU"], "'NPU' is not available", "--device CPU")
    _one_line_error(capsys, ["run", "a fox", "--model", tiny_export, "-o", tmp_path / "x.png", "--backend", "openvino",
                             "--device", "TPU"], "unknown OpenVINO device 'TPU'")
    _one_line_error(capsys, ["run", "a fox", "--model", tiny_export, "-o", tmp_path / "x.png", "--backend", "onnxruntime",
                             "--device", "CPU"], "--backend openvino")
    assert not (tmp_path / "x.png").exists()


def test_openvino_backend_without_the_extra(capsys, tiny_export, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an install without the extra sees
    _one_line_error(capsys, ["run", "a fox", "--model", tiny_export, "-o", tmp_path / "x.png", "--backend", "openvino"],
                    "'openvino' extra", "pip install 'sana-edge[openvino]'")
    assert not (tmp_path / "x.png").exists()


def test_graph_openvino_cannot_convert_is_one_line(tmp_path):
    """e.g. ONNX Runtime's GatherBlockQuantized on a 4-bit text encoder narrower than its block."""
    import onnx
    from onnx import TensorProto, helper

    from sana_edge.backends.openvino_backend import OpenVINOBackend
    from sana_edge.errors import UserError

    node = helper.make_node("NotAnOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
              str(path))
    with pytest.raises(UserError) as caught:
        OpenVINOBackend(cache=False).load(path)
    message = str(caught.value)
    assert "\n" not in message and "custom.onnx" in message and "--backend onnxruntime" in message
