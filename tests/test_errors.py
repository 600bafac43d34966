"""Bad input: one-line error naming the problem and the fix, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import shutil

import pytest

from sana_edge.cli import main


def _run(capsys, *args):
    code = main(list(map(str, args)))
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_one_line_error(code, err, *needles):
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err


def test_export_missing_checkpoint(capsys, tmp_path):
    code, err = _run(capsys, "export", tmp_path / "nope", "-o", tmp_path / "out")
    _assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "out").exists()


def test_export_folder_that_is_not_sana(capsys, tmp_path):
    (tmp_path / "plain").mkdir()
    code, err = _run(capsys, "export", tmp_path / "plain", "-o", tmp_path / "out")
    _assert_one_line_error(code, err, "model_index.json", "init-tiny")
    other = tmp_path / "sd"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    code, err = _run(capsys, "export", other, "-o", tmp_path / "out")
    _assert_one_line_error(code, err, "StableDiffusionPipeline", "not SANA")
    assert not (tmp_path / "out").exists()


def test_export_refuses_non_empty_out_without_force(capsys, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _run(capsys, "export", tiny_checkpoint, "-o", out)
    _assert_one_line_error(code, err, "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_export_unknown_precision(capsys, tiny_checkpoint, tmp_path):
    code, err = _run(capsys, "export", tiny_checkpoint, "-o", tmp_path / "out", "--precision", "fp8")
    _assert_one_line_error(code, err, "fp8", "fp32")
    assert not (tmp_path / "out").exists()


def test_export_force_replaces(capsys, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert main(["export", str(tiny_checkpoint), "-o", str(out), "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture
def export_copy(tiny_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    return copy


def _run_model(capsys, model, tmp_path, *extra):
    out = tmp_path / "img.png"
    code, err = _run(capsys, "run", "a fox", "--model", model, "-o", out, "--steps", "2",
                     "--height", "64", "--width", "64", *extra)
    assert not out.exists() or code == 0
    return code, err


def test_run_export_missing_a_file(capsys, export_copy, tmp_path):
    (export_copy / "transformer_step.onnx").unlink()
    _assert_one_line_error(*_run_model(capsys, export_copy, tmp_path), "missing transformer_step.onnx")


def test_run_export_with_modified_file(capsys, export_copy, tmp_path):
    with open(export_copy / "vae_decoder.onnx", "ab") as handle:
        handle.write(b"\0")
    _assert_one_line_error(*_run_model(capsys, export_copy, tmp_path), "vae_decoder.onnx", "sha256")


def test_run_manifest_of_unknown_version(capsys, export_copy, tmp_path):
    manifest = json.loads((export_copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (export_copy / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_line_error(*_run_model(capsys, export_copy, tmp_path), "format version 99", "re-export")


@pytest.mark.parametrize("extra,needle", [
    (("--height", "100"), "height 100"), (("--width", "0"), "'--width': 0 is outside 32..8192"),
    (("--height", "-64"), "'--height': -64 is outside"), (("--steps", "0"), "steps"),
])
def test_run_bad_sizes_and_steps(capsys, tiny_export, tmp_path, extra, needle):
    _assert_one_line_error(*_run_model(capsys, tiny_export, tmp_path, *extra), needle)
    assert not (tmp_path / "img.png").exists()


def test_run_missing_export_folder(capsys, tmp_path):
    _assert_one_line_error(*_run_model(capsys, tmp_path / "nothing", tmp_path), "does not exist", "sana-edge export")


def test_empty_prompt_is_allowed(capsys, tiny_export, tmp_path):
    code = main(["run", "", "--model", str(tiny_export), "-o", str(tmp_path / "u.png"), "--steps", "2",
                 "--height", "64", "--width", "64", "--seed", "0"])
    assert code == 0 and (tmp_path / "u.png").is_file()


def test_long_prompt_warns(capsys, tiny_export, tmp_path):
    code = main(["run", "fox " * 2000, "--model", str(tiny_export), "-o", str(tmp_path / "l.png"),
                 "--steps", "1", "--height", "64", "--width", "64"])
    assert code == 0
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize("extra,needles", [
    (("--precision", "int8", "--target", "tflite"), ("tflite", "ort")),
    (("--precision", "int8", "--calib-size", "0"), ("--calib-size",)),
    (("--precision", "int8", "--calib-steps", "0"), ("--calib-steps",)),
    (("--precision", "int4", "--block-size", "100"), ("--block-size",)),
    (("--precision", "int8", "--smoothquant-alpha", "1.5"), ("--smoothquant-alpha",)),
])
def test_export_bad_quant_options(capsys, tiny_checkpoint, tmp_path, extra, needles):
    code, err = _run(capsys, "export", tiny_checkpoint, "-o", tmp_path / "out", *extra)
    _assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out").exists()


def test_export_calibration_prompt_file_missing_or_empty(capsys, tiny_checkpoint, tmp_path):
    code, err = _run(capsys, "export", tiny_checkpoint, "-o", tmp_path / "out", "--precision", "int8",
                     "--calib-prompts", tmp_path / "none.txt")
    _assert_one_line_error(code, err, "none.txt", "does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    code, err = _run(capsys, "export", tiny_checkpoint, "-o", tmp_path / "out", "--precision", "int8",
                     "--calib-prompts", empty)
    _assert_one_line_error(code, err, "empty.txt", "no prompts")
    assert not (tmp_path / "out").exists()


def test_doctor_reports_versions_and_providers(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime providers: " in out and "CPUExecutionProvider" in out
    assert "torch" in out and "tensorrt" in out


def test_graph_that_does_not_match_its_declaration(capsys, export_copy, tmp_path):
    """A graph whose input names differ from sana_edge.components: one line naming both sides."""
    import onnx

    from sana_edge.manifest import sha256_file

    path = export_copy / "vae_decoder.onnx"
    model = onnx.load(str(path))
    old = model.graph.input[0].name
    model.graph.input[0].name = "latent_sample"  # optimum's name for it
    for node in model.graph.node:
        node.input[:] = ["latent_sample" if name == old else name for name in node.input]
    onnx.save(model, str(path))
    manifest = json.loads((export_copy / "manifest.json").read_text())
    manifest["components"]["vae_decoder"]["sha256"] = sha256_file(path)
    (export_copy / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_line_error(*_run_model(capsys, export_copy, tmp_path), "latent_sample", "declaration says latent")
