"""`sana-edge export --target openvino`: OpenVINO IR, int8/int4 by NNCF, hashed in the manifest,
validated against PyTorch, run by `sana-edge run` (auto picks OpenVINO) and compared by eval."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline, shapes
from sana_edge.cli import main

pytest.importorskip("openvino")
pytest.importorskip("nncf")

CAPTIONS = 8


@pytest.fixture(scope="module")
def shapes_exports(tmp_path_factory):
    """The shipped shapes model: fp32 (ONNX, the reference) and --target openvino int8 / int4."""
    from sana_edge.default_model import BUILTIN_NAME
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.quant.configs import QuantSettings

    root = tmp_path_factory.mktemp("openvino-exports")
    exports = {"fp32": export_checkpoint(ExportOptions(BUILTIN_NAME, root / "fp32"), log=lambda _: None)}
    for precision in ("int8", "int4"):
        options = ExportOptions(BUILTIN_NAME, root / f"ov-{precision}", precision=precision,
                                quant=QuantSettings(target="openvino"))
        exports[f"ov-{precision}"] = export_checkpoint(options, log=lambda _: None)
    return exports


def _verdicts(export) -> list[dict]:
    from benchmarks.shapes_score import NOISE_SEED, held_out_captions

    pipe = SanaEdgePipeline.from_export(export, backend="auto")
    return [shapes.score_image(pipe.generate(caption, steps=20, seed=NOISE_SEED + i).image, caption)
            for i, caption in enumerate(held_out_captions(CAPTIONS))]


def test_openvino_int8_and_int4_exports_keep_what_fp32_draws(shapes_exports):
    """A quantized export must still draw the captions fp32 draws right. Counted per caption, not
    as a score: on 8 captions one image costs ~9 points, and the shipped model's one hard caption
    here (a small orange triangle on yellow, which fp32 already draws as a speck of the wrong
    shape) fades out entirely at ov-int8. A broken export loses most captions."""
    reference = _verdicts(shapes_exports["fp32"])
    right = [i for i, verdict in enumerate(reference) if all(verdict.values())]
    assert len(right) >= CAPTIONS - 2  # the reference itself draws its captions
    for name in ("ov-int8", "ov-int4"):
        verdicts = _verdicts(shapes_exports[name])
        lost = [i for i in right if not all(verdicts[i].values())]
        assert len(lost) <= 1, (name, lost, [verdicts[i] for i in lost])


@pytest.mark.parametrize("name,transformer_method", [("ov-int8", "nncf.quantize"), ("ov-int4", "nncf.compress_weights")])
def test_openvino_export_is_described_by_the_manifest(shapes_exports, name, transformer_method):
    from sana_edge.manifest import load_manifest

    manifest = load_manifest(shapes_exports[name])  # verifies every listed file's sha256
    assert manifest.graph_format == "openvino"
    record = manifest.data["quantization"]
    transformer, text_encoder = record["components"]["transformer_step"], record["components"]["text_encoder"]
    assert record["target"] == "openvino" and transformer["result"]["method"] == transformer_method
    # int8: the text encoder's 8-bit weights; int4: the 4 bits the shipped model asks for
    # (sana_edge_quantization.json; the OpenVINO recipe alone would keep 8)
    mode = {"ov-int8": ("int8_asym", -1), "ov-int4": ("int4_sym", 128)}[name]
    assert text_encoder["config"] == {"type": "NncfCompressWeights", "mode": mode[0], "group_size": mode[1],
                                      "keep_fp": ["/self_attn/MatMul"]}
    if name == "ov-int8":  # the depthwise convolution stays float in NNCF's W8A8 (nncf_openvino.py)
        assert "/ff/conv_depth/" in transformer["config"]["keep_fp"]
    if name == "ov-int4":
        assert transformer["config"]["group_size"] == 128  # --block-size
    else:  # calibrated on every step of every trajectory: 16 prompts x 8 steps
        assert transformer["result"]["calibration_samples"] == 16 * 8 and record["calibration"]["sha256"]
    for component, entry in manifest.components.items():
        assert entry["file"] == f"{component}.xml" and list(entry["external_data"]) == [f"{component}.bin"]
        assert not (manifest.root / f"{component}.onnx").exists()
        threshold = 0.9999 if component == "vae_decoder" else 0.99 if name == "ov-int8" else 0.95
        assert min(e["cosine"] for e in entry["validation"]) >= threshold
    assert manifest.components["transformer_step"]["linear_attention_eps_constants"] > 0
    assert manifest.components["vae_decoder"]["linear_attention_eps_constants"] > 0


def test_openvino_export_runs_on_openvino_only(shapes_exports, tmp_path, capsys):
    export = shapes_exports["ov-int8"]
    assert main(["run", "a small red circle at the top left on a blue background", "--model", str(export),
                 "-o", str(tmp_path / "auto.png"), "--seed", "0"]) == 0
    assert "openvino" in capsys.readouterr().out
    code = main(["run", "a fox", "--model", str(export), "-o", str(tmp_path / "x.png"), "--backend", "onnxruntime"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--backend openvino" in err, err
    assert not (tmp_path / "x.png").exists()


def test_eval_compares_the_openvino_export_with_an_ort_export(shapes_exports):
    from sana_edge.evaluation import compare_exports

    captions = ["a small red circle at the top left on a blue background", "a large green square in the centre on a white background"]
    result = compare_exports(shapes_exports["fp32"], shapes_exports["ov-int8"], captions, size=128, steps=6, verify=False)
    assert result["config"]["precision_b"] == "int8 openvino"
    assert result["summary"]["psnr_db"]["min"] > 20 and result["summary"]["transformer_cosine"]["min"] > 0.98
    assert set(result["summary"]["task_score"]) == {"a", "b"}


def test_fp32_openvino_ir_draws_the_onnx_image(tiny_checkpoint, tiny_export, tmp_path, monkeypatch):
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    assert main(["export", str(tiny_checkpoint), "-o", str(tmp_path / "ir"), "--target", "openvino"]) == 0
    manifest = json.loads((tmp_path / "ir" / "manifest.json").read_text())
    assert manifest["graph_format"] == "openvino"
    assert manifest["quantization"]["components"]["transformer_step"]["config"] == {"type": "NncfKeepFloat"}
    latents = np.random.default_rng(2).standard_normal((1, 32, 4, 4)).astype(np.float32)
    images = [np.asarray(SanaEdgePipeline.from_export(e, backend="auto")("a red fox", height=128, width=128, steps=3,
                                                                          latents=latents)).astype(np.int16)
              for e in (tiny_export, tmp_path / "ir")]
    assert np.abs(images[0] - images[1]).max() <= 2


def _one_line_error(capsys, args, *needles):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_target_openvino_bad_combinations(capsys, tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _one_line_error(capsys, ["export", tiny_checkpoint, "-o", out, "--target", "openvino", "--backend", "tensorrt"],
                    "--target openvino", "TensorRT")
    monkeypatch.setitem(sys.modules, "nncf", None)  # an install without the nncf extra
    _one_line_error(capsys, ["export", tiny_checkpoint, "-o", out, "--target", "openvino", "--precision", "int8"],
                    "pip install 'sana-edge[nncf]'")
    assert not out.exists()

