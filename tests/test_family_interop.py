"""The family's extra components through the interop paths: `--target openvino` carries the DC-AE
encoder and a controlnet (Sprint img2img on OpenVINO draws the ONNX Runtime image; a controlnet is
NNCF weight-compressed at int8), and `sana-edge convert` refuses what optimum-onnx cannot run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.cli import main
from tests.family_helpers import noise, pixels


def _one_line_error(capsys, args, *needles):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("fixture,kind", [("sprint_export", "sprint"), ("controlnet_export", "controlnet")])
def test_convert_refuses_exports_optimum_cannot_run(request, tmp_path, capsys, fixture, kind):
    export = request.getfixturevalue(fixture)
    _one_line_error(capsys, ["convert", export, "-o", tmp_path / "optimum"], kind, "ORTSanaPipeline")
    assert not (tmp_path / "optimum").exists()


def _input_image(path, height, width):
    from PIL import Image

    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_sprint_openvino_fp32_img2img_draws_the_onnx_image(sprint_checkpoint, sprint_export, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    assert main(["export", str(sprint_checkpoint), "-o", str(tmp_path / "ir"), "--target", "openvino"]) == 0
    manifest = json.loads((tmp_path / "ir" / "manifest.json").read_text())
    assert manifest["graph_format"] == "openvino" and {"vae_encoder", "transformer"} <= set(manifest["components"])
    assert [i["name"] for i in manifest["components"]["transformer"]["inputs"]][-1] == "guidance"
    image = _input_image(tmp_path / "in.png", 96, 128)
    latents, step_noise = noise((1, 32, 3, 4), seed=6), noise((1, 32, 3, 4), seed=7, count=1)
    images = [pixels(SanaEdgePipeline.from_export(e, backend="auto")("a red fox", image=image, strength=0.6,
                                                                      latents=latents, step_noise=step_noise))
              for e in (sprint_export, tmp_path / "ir")]
    assert images[0].shape == (96, 128, 3)
    assert np.abs(images[0] - images[1]).max() <= 2


def test_openvino_int8_export_compresses_the_controlnet(tiny_checkpoint, controlnet_dir, controlnet_export, tmp_path,
                                                        monkeypatch):
    pytest.importorskip("nncf")
    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ov-int8"
    assert main(["export", str(tiny_checkpoint), "--controlnet", str(controlnet_dir), "-o", str(out),
                 "--target", "openvino", "--precision", "int8", "--calib-size", "2", "--calib-steps", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    configs = {n: c["config"] for n, c in manifest["quantization"]["components"].items()}
    assert configs["controlnet"]["type"] == "NncfCompressWeights" and configs["controlnet"]["mode"] == "int8_asym"
    assert configs["vae_encoder"] == {"type": "NncfKeepFloat"}
    assert all(entry["file"].endswith(".xml") for entry in manifest["components"].values())
    latents = noise((1, 32, 4, 4), seed=8)
    control = _input_image(tmp_path / "edges.png", 128, 128)
    runs = [SanaEdgePipeline.from_export(e, backend="auto").generate("a house", steps=3, latents=latents,
                                                                       control_image=control).latents
            for e in (controlnet_export, out)]
    cosine = float(np.sum(runs[0] * runs[1]) / (np.linalg.norm(runs[0]) * np.linalg.norm(runs[1])))
    assert cosine > 0.95, cosine
