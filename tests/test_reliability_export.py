"""`sana-edge export` refuses damaged checkpoints, pickles and bad outputs with one line, before
torch is imported (it is blocked in these subprocesses), and writes nothing (issue 12, item 8)."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    return copy


def _truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGES = {
    "truncated-safetensors": (lambda c: _truncate(c / "transformer/diffusion_pytorch_model.safetensors", 4000),
                              ("diffusion_pytorch_model.safetensors", "damaged or truncated")),
    "safetensors-cut-in-header": (lambda c: _truncate(c / "vae/diffusion_pytorch_model.safetensors", 20),
                                  ("damaged or truncated", "no valid header")),
    "garbage-safetensors": (lambda c: (c / "text_encoder/model.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0" + b"not json, at all!!!!"),
                            ("model.safetensors", "unreadable header")),
    "empty-safetensors": (lambda c: (c / "text_encoder/model.safetensors").write_bytes(b""), ("no valid header",)),
    "invalid-config-json": (lambda c: (c / "transformer/config.json").write_text('{"in_channels": 32,'),
                            ("transformer/config.json", "not valid JSON")),
    "config-json-a-list": (lambda c: (c / "vae/config.json").write_text("[1, 2]"), ("must hold a JSON object",)),
    "invalid-model-index": (lambda c: (c / "model_index.json").write_text("SanaPipeline"), ("model_index.json", "not valid JSON")),
    "model-index-not-utf8": (lambda c: (c / "model_index.json").write_bytes(b"\xff\xfe{}"), ("not UTF-8",)),
    "invalid-scheduler-config": (lambda c: (c / "scheduler/scheduler_config.json").write_text("{"), ("scheduler_config.json",)),
    "invalid-tokenizer-json": (lambda c: (c / "tokenizer/tokenizer.json").write_text("{]"), ("tokenizer.json",)),
    "no-weights": (lambda c: (c / "vae/diffusion_pytorch_model.safetensors").unlink(), ("holds no weights",)),
    "missing-folder": (lambda c: shutil.rmtree(c / "scheduler"), ("lacks the folder(s) scheduler",)),
    "bad-quantization-defaults": (lambda c: (c / "sana_edge_quantization.json").write_text('{"int4": {"text_encoder_bits": 3}}'),
                                  ("text_encoder_bits=3", "4 or 8")),
    "bad-quantization-keep-fp": (lambda c: (c / "sana_edge_quantization.json").write_text('{"int4": {"keep_fp": "/ff/"}}'),
                                 ("keep_fp='/ff/'", "list of node-name regexes")),
    "bad-quantization-keep-fp-regex": (
        lambda c: (c / "sana_edge_quantization.json").write_text('{"int4": {"keep_fp": ["/ff/conv_(depth"]}}'),
        ("--keep-fp '/ff/conv_(depth' is not a valid regular expression",)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_checkpoint(sandbox, checkpoint, damage):
    apply, needles = DAMAGES[damage]
    apply(checkpoint)
    precision = ("--precision", "int4") if damage.startswith("bad-quantization") else ()
    sandbox.refused("export", checkpoint, "-o", "out", *precision, needles=needles, watch=(checkpoint,), without_torch=True)


def _pickle_only(checkpoint) -> None:
    weights = checkpoint / "vae" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    # Any pickle: its content never matters, because it is refused by name before anything reads it.
    (checkpoint / "vae" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"weight": [0.0]}))


def test_pickle_checkpoint_refused_unless_allowed(sandbox, checkpoint):
    _pickle_only(checkpoint)
    sandbox.refused("export", checkpoint, "-o", "out", needles=("pickle weights only", "--allow-pickle"),
                    watch=(checkpoint,), without_torch=True)
    # With --allow-pickle the checkpoint passes the checks: the export goes on to the output check.
    (sandbox.work / "out").mkdir()
    (sandbox.work / "out" / "keep.txt").write_text("mine")
    sandbox.refused("export", checkpoint, "-o", "out", "--allow-pickle", needles=("not empty",), without_torch=True)


@pytest.mark.slow
def test_allow_pickle_exports_a_bin_checkpoint(sandbox, checkpoint):
    """A real torch pickle checkpoint exports with --allow-pickle (and the manifest verifies)."""
    import safetensors.torch
    import torch

    weights = checkpoint / "vae" / "diffusion_pytorch_model.safetensors"
    torch.save(safetensors.torch.load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()
    result = sandbox.cli("export", checkpoint, "-o", "out", "--allow-pickle")
    assert result.code == 0, result.err
    from sana_edge.manifest import load_manifest

    load_manifest(sandbox.work / "out")


@pytest.mark.parametrize("out,needles", [
    ("/proc/x", ("system folder",)),
    ("/dev/sana-edge-out", ("system folder",)),
    ("afile", ("is a file",)),
    ("afile/sub", ("'afile' is a file, not a folder",)),
])
def test_export_output_refused(sandbox, checkpoint, out, needles):
    (sandbox.work / "afile").write_text("a file")
    sandbox.refused("export", checkpoint, "-o", out, needles=needles, watch=(checkpoint,), without_torch=True)


def test_checkpoint_that_is_a_file(sandbox):
    (sandbox.work / "model.safetensors").write_bytes(b"\0" * 16)
    sandbox.refused("export", "model.safetensors", "-o", "out", needles=("is a file, not a folder",), without_torch=True)


def test_model_index_of_another_pipeline(sandbox, checkpoint):
    (checkpoint / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    sandbox.refused("export", checkpoint, "-o", "out", needles=("FluxPipeline", "not SANA"), without_torch=True)


# -- options and commands added with OpenVINO / optimum interop --------------------------------

@pytest.mark.parametrize("args,needles", [
    (("--quantize-decoder",), ("--quantize-decoder quantizes int8/int4 exports, not fp32",)),
    (("--quantize-decoder", "--precision", "fp16"), ("not fp16",)),
    (("--target", "openvino", "--backend", "tensorrt"), ("drop one of them",)),
    (("--target", "onnx"), ("unknown target 'onnx'",)),
], ids=["quantize-decoder-fp32", "quantize-decoder-fp16", "openvino-with-tensorrt", "unknown-target"])
def test_export_option_combinations(sandbox, checkpoint, args, needles):
    sandbox.refused("export", checkpoint, "-o", "out", *args, needles=needles, watch=(checkpoint,), without_torch=True)


def test_convert_refuses_missing_export_and_its_own_folder(sandbox, tiny_export):
    sandbox.refused("convert", "no-such-export", "-o", "out", needles=("does not exist",), without_torch=True)
    for out in (tiny_export, tiny_export / "optimum", tiny_export.parent):
        sandbox.refused("convert", tiny_export, "-o", out, "--force", needles=("overlaps",),
                        watch=(tiny_export,), without_torch=True)


def test_import_refuses_what_is_not_an_optimum_folder(sandbox, tiny_export):
    sandbox.refused("import", "no-such-folder", "-o", "out", needles=("does not exist",), without_torch=True)
    sandbox.refused("import", tiny_export, "-o", "out", needles=("not an optimum-onnx export",),
                    watch=(tiny_export,), without_torch=True)
