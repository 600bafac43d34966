"""int8 / int4 exports on the tiny model: they run, exclusions hold, calibration is deterministic,
the recipe is recorded, TensorRT-flavoured graphs have the forms its parser takes."""

from __future__ import annotations

import dataclasses

import inspect_helpers
import numpy as np
import onnx
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.export.exporter import ExportOptions, export_checkpoint
from sana_edge.manifest import load_manifest, sha256_file
from sana_edge.quant import configs, graph
from sana_edge.quant.configs import DEFAULT_KEEP_FP, Calibration, QuantSettings


def _export(checkpoint, out, precision, seed=0, **quant):
    options = ExportOptions(str(checkpoint), out, precision=precision, quant=QuantSettings(**quant),
                            calibration=Calibration(size=3, steps=3, resolution=64, seed=seed))
    return export_checkpoint(options, log=lambda _: None)


@pytest.fixture(scope="module")
def int8_export(tiny_checkpoint, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("q") / "int8", "int8")


@pytest.fixture(scope="module")
def int4_export(tiny_checkpoint, tmp_path_factory):
    return _export(tiny_checkpoint, tmp_path_factory.mktemp("q") / "int4", "int4", block_size=32)


@pytest.mark.parametrize("which", ["int8_export", "int4_export"])
def test_quantized_export_generates_finite_images(which, request):
    export = request.getfixturevalue(which)
    result = SanaEdgePipeline.from_export(export).generate("a red fox", height=128, width=128, steps=4, seed=0)
    assert np.isfinite(result.latents).all()
    assert np.asarray(result.image).std() > 1
    manifest = load_manifest(export)
    for entry in manifest.components.values():
        assert all(v["finite"] for v in entry["validation"])


def test_int8_transformer_quantizes_linears_and_keeps_declared_exclusions(int8_export):
    model = onnx.load(str(int8_export / "transformer_step.onnx"))
    quantized = inspect_helpers.activation_quantized_nodes(model)
    kept = set(graph.matching_nodes(model, DEFAULT_KEEP_FP))
    assert kept and not (quantized & kept)
    # kept layers compute on float activations; their weights are stored as per-channel int8
    assert {"/model/proj_out/MatMul", "/model/time_embed/linear/Gemm"} <= inspect_helpers.quantized_nodes(model)
    for layer in ("attn1/to_q/MatMul", "attn1/to_out.0/MatMul", "attn2/to_q/MatMul", "ff/conv_inverted/Conv", "ff/conv_point/Conv"):
        assert any(name.endswith(layer) for name in quantized), layer
    for layer in ("attn2/MatMul", "proj_out/MatMul", "attn1/MatMul"):
        assert any(name.endswith(layer) for name in kept), layer
    # The caption graph holds the cross-attention K/V projections (kept float, as the paper
    # keeps them): float compute on float activations, int8-stored weights.
    caption = onnx.load(str(int8_export / "caption_kv.onnx"))
    assert not inspect_helpers.activation_quantized_nodes(caption)
    stored = inspect_helpers.quantized_nodes(caption)
    for layer in ("attn2/to_k/MatMul", "attn2/to_v/MatMul", "caption_projection/linear_1/MatMul"):
        assert any(name.endswith(layer) for name in stored), layer


def test_int4_quantizes_ffn_convs_as_matmul_and_text_encoder(int4_export):
    model = onnx.load(str(int4_export / "transformer_step.onnx"))
    int4 = {n.name for n in model.graph.node if n.op_type == "MatMulNBits"}
    assert any("conv_inverted/Conv/as_matmul" in n for n in int4)
    assert not int4 & set(graph.matching_nodes(model, DEFAULT_KEEP_FP))
    assert not inspect_helpers.activation_quantized_nodes(model)  # weight-only: activations stay float
    text = onnx.load(str(int4_export / "text_encoder.onnx"))
    ops = {n.op_type for n in text.graph.node}
    assert {"MatMulNBits", "GatherBlockQuantized"} <= ops


def test_keep_fp_is_the_users_to_change(tiny_checkpoint, tmp_path):
    export = _export(tiny_checkpoint, tmp_path / "keep", "int8", keep_fp=DEFAULT_KEEP_FP + (r"/ff/",))
    quantized = inspect_helpers.activation_quantized_nodes(onnx.load(str(export / "transformer_step.onnx")))
    assert quantized and not any("/ff/" in n for n in quantized)
    recipe = load_manifest(export).data["quantization"]
    assert r"/ff/" in recipe["components"]["transformer_step"]["config"]["keep_fp"]


def test_calibration_is_deterministic(int8_export, tiny_checkpoint, tmp_path):
    again = _export(tiny_checkpoint, tmp_path / "again", "int8")
    assert sha256_file(again / "transformer_step.onnx") == sha256_file(int8_export / "transformer_step.onnx")
    first, second = (load_manifest(p).data["quantization"]["calibration"] for p in (int8_export, again))
    assert first["sha256"] == second["sha256"] is not None
    other_seed = _export(tiny_checkpoint, tmp_path / "seed1", "int8", seed=1)
    assert load_manifest(other_seed).data["quantization"]["calibration"]["sha256"] != first["sha256"]


def test_manifest_records_recipe(int8_export, int4_export):
    int8 = load_manifest(int8_export)
    assert int8.precision == "int8"
    recipe = int8.data["quantization"]
    transformer = recipe["components"]["transformer_step"]["config"]
    assert transformer["type"] == "W8A8Static" and recipe["target"] == "ort"
    assert recipe["calibration"]["size"] == 3 and transformer["keep_fp"] == list(DEFAULT_KEEP_FP)
    int4 = load_manifest(int4_export).data["quantization"]["components"]
    assert int4["transformer_step"]["config"]["block_size"] == 32 and int4["text_encoder"]["config"]["bits"] == 4


def test_smoothquant_keeps_the_fp32_function(tiny_export, tmp_path):
    """Smoothing alone (no quantization) must not change what the graph computes."""
    import onnxruntime as ort

    from sana_edge.components import TRANSFORMER_STEP, sample_inputs
    from sana_edge.quant.smoothquant import smooth

    path = tmp_path / "transformer_step.onnx"
    path.write_bytes((tiny_export / "transformer_step.onnx").read_bytes())
    dims = load_manifest(tiny_export).model.dims()
    feeds = [sample_inputs(TRANSFORMER_STEP, {**dims, **shape}, seed=i)
             for i, shape in enumerate(TRANSFORMER_STEP.validation_shapes)]
    model = onnx.load(str(path))
    excluded = set(graph.matching_nodes(model, DEFAULT_KEEP_FP))
    assert smooth(model, feeds, alpha=0.5, excluded=excluded) > 0
    before = ort.InferenceSession(str(path)).run(None, feeds[1])[0]
    after = ort.InferenceSession(model.SerializeToString()).run(None, feeds[1])[0]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
    assert any(n.name.endswith("/SmoothQuant/Mul") for n in model.graph.node)


def test_int8_with_smoothquant_runs(tiny_checkpoint, tmp_path):
    export = _export(tiny_checkpoint, tmp_path / "sq", "int8", smoothquant_alpha=0.5)
    recipe = load_manifest(export).data["quantization"]
    transformer = recipe["components"]["transformer_step"]
    assert transformer["config"]["smoothquant_alpha"] == 0.5 and transformer["result"]["smoothquant_tensors"] > 0
    image = SanaEdgePipeline.from_export(export)("a fox", height=64, width=64, steps=2, seed=0)
    assert np.asarray(image).std() > 0


def test_tensorrt_target_graph_forms(tiny_checkpoint, tmp_path):
    int8 = onnx.load(str(_export(tiny_checkpoint, tmp_path / "trt8", "int8", target="tensorrt") / "transformer_step.onnx"))
    initializers = {t.name: t for t in int8.graph.initializer}
    for node in int8.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            data_type = initializers[node.input[0]].data_type if node.input[0] in initializers else None
            assert data_type != onnx.TensorProto.INT32, "bias must not be quantized for TensorRT"
            if len(node.input) > 2 and node.input[2] in initializers:
                zero_point = onnx.numpy_helper.to_array(initializers[node.input[2]])
                assert zero_point.dtype == np.int8 and not zero_point.any(), "symmetric int8 only"
    int4_dir = _export(tiny_checkpoint, tmp_path / "trt4", "int4", target="tensorrt", block_size=16)
    for name in ("transformer_step.onnx", "text_encoder.onnx"):
        model = onnx.load(str(int4_dir / name))
        ops = {n.op_type for n in model.graph.node}
        assert "MatMulNBits" not in ops and "GatherBlockQuantized" not in ops
        blocked = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and any(a.name == "block_size" for a in n.attribute)]
        assert blocked, name
    image = SanaEdgePipeline.from_export(int4_dir)("a fox", height=64, width=64, steps=2, seed=0)
    assert np.asarray(image).std() > 0


@pytest.mark.parametrize("config", [
    configs.KeepFloat(),
    configs.W8A8Static(),
    configs.W8A8Static(keep_fp=(r"/ff/",), smoothquant_alpha=0.5, symmetric_activations=True, quantize_bias=False),
    configs.WeightOnly(),
    configs.WeightOnly(bits=8, block_size=32, keep_fp=configs.TEXT_ENCODER_KEEP_FP, ort_ops=False),
])
def test_every_config_type_round_trips_through_the_manifest(config):
    import json

    record = json.loads(json.dumps(configs.config_record(config)))  # what the manifest stores
    assert record["type"] == type(config).__name__
    assert configs.config_from_record(record) == config
    assert type(config) in configs._HANDLERS or not config.changes_graph


def test_manifest_configs_are_the_recipe_the_export_used(int8_export, int4_export):
    for export, precision, settings in ((int8_export, "int8", configs.QuantSettings()),
                                        (int4_export, "int4", configs.QuantSettings(block_size=32))):
        manifest = load_manifest(export)
        recorded = manifest.data["quantization"]["components"]
        rebuilt = {name: configs.config_from_record(entry["config"]) for name, entry in recorded.items()}
        recipe = configs.build_recipe(precision, settings)
        assert set(rebuilt) == set(manifest.components)
        assert rebuilt == {name: recipe[name] for name in manifest.components}


@pytest.mark.parametrize("kwargs,needle", [
    ({"target": "tflite"}, "tflite"), ({"block_size": 100}, "--block-size"),
    ({"smoothquant_alpha": 1.5}, "--smoothquant-alpha"), ({"text_encoder_bits": 3}, "--text-encoder-bits"),
    ({"keep_fp": ("(unclosed",)}, "--keep-fp"),
])
def test_settings_are_checked_when_made(kwargs, needle):
    from sana_edge.errors import UserError

    with pytest.raises(UserError, match=needle.replace("-", r"\-")):
        configs.QuantSettings(**kwargs)


def test_text_encoder_bits_replaces_only_the_text_encoder_config():
    base, override = configs.build_recipe("int4"), configs.build_recipe("int4", configs.QuantSettings(text_encoder_bits=8))
    assert override["text_encoder"] == dataclasses.replace(base["text_encoder"], bits=8)
    assert override["transformer"] == base["transformer"] and override["vae_decoder"] == base["vae_decoder"]


def test_checkpoint_asks_for_text_encoder_bits_and_float_layers_and_the_user_overrides(tmp_path):
    """sana_edge_quantization.json: per precision, text encoder bits and transformer layers kept
    in float on top of the defaults; --text-encoder-bits / --keep-fp given by the user win."""
    import json

    from sana_edge.export.prepare import _checkpoint_quant_defaults

    asks = tmp_path / "sana_edge_quantization.json"
    asks.write_text(json.dumps({"int8": {"keep_fp": ["/ff/conv_depth/"], "text_encoder_bits": 4}}))
    said = []
    got = _checkpoint_quant_defaults(asks, "int8", configs.QuantSettings(), said.append)
    assert got.keep_fp == configs.DEFAULT_KEEP_FP + ("/ff/conv_depth/",) and got.text_encoder_bits == 4
    assert any("/ff/conv_depth/" in line for line in said)
    assert configs.build_recipe("int8", got)["transformer_step"].keep_fp == got.keep_fp
    mine = configs.QuantSettings(keep_fp=("/attn1/",), text_encoder_bits=8)
    assert _checkpoint_quant_defaults(asks, "int8", mine, said.append) == mine
    assert _checkpoint_quant_defaults(asks, "int4", configs.QuantSettings(), said.append) == configs.QuantSettings()


@pytest.mark.parametrize("which", ["int8_export", "int4_export"])
def test_quantized_text_encoder_validates_with_a_past_and_its_prompt_cache_matches_it(which, request):
    """The cache is computed with the quantized graph, so cached encoding equals uncached for it."""
    from sana_edge.metrics import cosine
    from sana_edge.text_encoding import PromptEncoder

    export = request.getfixturevalue(which)
    manifest = load_manifest(export)
    pasts = {entry["shape"]["past_sequence"] for entry in manifest.components["text_encoder"]["validation"]}
    assert 0 in pasts and max(pasts) > 0
    assert min(manifest.data["prompt_cache"]["check_cosine"].values()) >= 0.9999
    pipe = SanaEdgePipeline.from_export(export)
    cached = pipe.prompt_encoder
    uncached = PromptEncoder(pipe.tokenizer, pipe.session, model=manifest.model, remember=0)
    (a, mask), (b, _) = cached.encode("a small red circle on a blue background", ""), uncached.encode(
        "a small red circle on a blue background", "")
    keep = mask.astype(bool)
    assert np.isfinite(a).all() and cosine(a[keep], b[keep]) >= 0.99999


def test_calibrated_graphs_are_validated_on_held_out_trajectories(int8_export):
    """Calibrated graphs are checked against the fp32 graph on inputs from sampler trajectories
    the scales never saw; weight-only graphs stay checked against PyTorch on random inputs."""
    components = load_manifest(int8_export).components
    step = components["transformer_step"]["validation"]
    assert len(step) == 4 and {entry["reference"] for entry in step} == {"the fp32 graph"}
    assert all(entry["cosine"] > 0.99 for entry in step)
    assert {entry["reference"] for entry in components["caption_kv"]["validation"]} == {"PyTorch"}


def test_quantize_decoder_calibrates_the_decoder_and_keeps_its_attention_float(tiny_checkpoint, tmp_path, monkeypatch):
    from sana_edge.components import DECODER

    # The tiny decoder's random weights quantize worse (cosine 0.979) than a trained decoder's
    # (shapes-SANA: 0.998, benchmarks/results/decoder_int8.md): this checks the mechanism.
    monkeypatch.setitem(DECODER.min_cosine, "int8", 0.95)
    export = _export(tiny_checkpoint, tmp_path / "dec", "int8", quantize_decoder=True)
    model = onnx.load(str(export / "vae_decoder.onnx"))
    quantized = inspect_helpers.activation_quantized_nodes(model)
    assert any("/decoder/" in n and n.endswith("Conv") for n in quantized)
    assert not quantized & set(graph.matching_nodes(model, configs.DECODER_KEEP_FP))
    entry = load_manifest(export).components["vae_decoder"]
    assert entry["validation"] and {v["reference"] for v in entry["validation"]} == {"the fp32 graph"}
    result = SanaEdgePipeline.from_export(export).generate("a red fox", height=64, width=64, steps=2, seed=0)
    assert np.asarray(result.image).std() > 1
