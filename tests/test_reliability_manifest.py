"""An export folder is downloaded and shared, so `sana-edge run` trusts nothing in it: paths stay
inside the folder, every file read is hash-listed, values are typed and bounded, and a graph
that yields NaN never becomes a PNG (issue 12, items 4, 5 and 8). Real CLI, in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

RUN = ("--steps", "1", "--height", "64", "--width", "64", "--seed", "0", "-o", "out.png")


@pytest.fixture
def export(tiny_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    return copy


@pytest.fixture
def outside(tmp_path, tiny_export):
    """A folder beside the export holding copies of its files (same sha256)."""
    folder = tmp_path / "outside"
    shutil.copytree(tiny_export, folder)
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _edit(export: Path, change) -> None:
    path = export / "manifest.json"
    data = json.loads(path.read_text())
    data = change(data) or data
    path.write_text(json.dumps(data))


def _set(data, *keys_and_value):
    *keys, last, value = keys_and_value
    for key in keys:
        data = data[key]
    data[last] = value


def _refused(sandbox, export, *needles, extra=()):
    return sandbox.refused("run", "a fox", "-m", export, *RUN, *extra, needles=needles, watch=(export,))


# -- 4. paths that leave the folder ----------------------------------------------------------

def test_component_file_with_an_absolute_path(sandbox, export, outside):
    _edit(export, lambda d: _set(d, "components", "transformer_step", "file", str(outside / "transformer_step.onnx")))
    _refused(sandbox, export, "points outside the folder")


def test_component_file_climbing_out(sandbox, export, outside):
    _edit(export, lambda d: _set(d, "components", "vae_decoder", "file", "../outside/vae_decoder.onnx"))
    _refused(sandbox, export, "'../outside/vae_decoder.onnx'", "points outside the folder")


def test_files_entry_outside_is_never_opened(sandbox, export):
    _edit(export, lambda d: _set(d, "files", "/etc/passwd", _sha("/etc/passwd")))
    _refused(sandbox, export, "'/etc/passwd'", "points outside the folder")


@pytest.mark.parametrize("key", ["tokenizer", "scheduler_config"])
def test_tokenizer_and_scheduler_outside(sandbox, export, outside, key):
    relative = {"tokenizer": "tokenizer/tokenizer.json", "scheduler_config": "scheduler/scheduler_config.json"}[key]
    target = f"../outside/{relative}"

    def point_outside(data):
        _set(data, key, target)
        _set(data, "files", target, _sha(outside / relative))

    _edit(export, point_outside)
    _refused(sandbox, export, "points outside the folder")


@pytest.mark.parametrize("key", ["tokenizer", "scheduler_config"])
def test_tokenizer_and_scheduler_must_be_hash_listed(sandbox, export, key):
    (export / "extra.json").write_text("{}")
    _edit(export, lambda d: _set(d, key, "extra.json"))
    _refused(sandbox, export, f"the {key} file 'extra.json' has no sha256")


def test_symlinked_graph_leaving_the_folder(sandbox, export, outside):
    (export / "transformer_step.onnx").unlink()
    (export / "transformer_step.onnx").symlink_to(outside / "transformer_step.onnx")  # same bytes, same sha256
    _refused(sandbox, export, "transformer_step.onnx", "link to a file outside the folder")


def test_symlinked_folder_leaving_the_export(sandbox, export, outside):
    shutil.rmtree(export / "tokenizer")
    (export / "tokenizer").symlink_to(outside / "tokenizer", target_is_directory=True)
    _refused(sandbox, export, "link to a file outside the folder")


def test_symlink_inside_the_folder_is_fine(sandbox, export):
    os.rename(export / "vae_decoder.onnx", export / "decoder-real.onnx")
    (export / "vae_decoder.onnx").symlink_to("decoder-real.onnx")
    result = sandbox.cli("run", "a fox", "-m", export, *RUN)
    assert result.code == 0, result.err


# -- 8. manifests that are not manifests ---------------------------------------------------------

STRUCTURE = {
    "a-list": (lambda d: [d], ("not a sana-edge manifest",)),
    "model-null": (lambda d: _set(d, "model", None), ("no model values",)),
    "no-components-key": (lambda d: d.pop("components") and None, ("lists no components",)),
    "empty-components": (lambda d: _set(d, "components", {}), ("lists no components",)),
    "component-missing": (lambda d: d["components"].pop("vae_decoder") and None, ("lacks the component(s) vae_decoder",)),
    "precision-fp7": (lambda d: _set(d, "precision", "fp7"), ("precision 'fp7'",)),
    "format-version-text": (lambda d: _set(d, "format_version", "1"), ("format version '1'",)),
    "latent-channels-text": (lambda d: _set(d, "model", "latent_channels", "abc"), ("latent_channels='abc'",)),
    "latent-channels-zero": (lambda d: _set(d, "model", "latent_channels", 0), ("latent_channels=0",)),
    "vae-scaling-zero": (lambda d: _set(d, "model", "vae_scaling_factor", 0), ("vae_scaling_factor=0",)),
    "sample-size-huge": (lambda d: _set(d, "model", "sample_size", 10**12), ("sample_size",)),
    "flow-shift-nan": (lambda d: _set(d, "model", "flow_shift", float("nan")), ("flow_shift=nan",)),
    "instruction-not-text": (lambda d: _set(d, "model", "complex_human_instruction", [1, 2]), ("complex_human_instruction",)),
    "bytes-negative": (lambda d: _set(d, "components", "transformer_step", "bytes", -1), ("no valid size",)),
    "sha-not-hex": (lambda d: _set(d, "components", "transformer_step", "sha256", "x" * 64), ("has no file and sha256",)),
    "files-a-list": (lambda d: _set(d, "files", ["tokenizer/tokenizer.json"]), ("'files' is not a map",)),
    "path-with-nul": (lambda d: _set(d, "components", "transformer_step", "file", "trans\0former.onnx"), ("not a relative path",)),
    "engines-garbage": (lambda d: _set(d, "engines", {"flavor": ["tensorrt"]}), ("flavor",)),
    "vae-factor-not-the-graphs": (lambda d: _set(d, "model", "vae_scale_factor", 16), ("decoder made a 128x128 image",)),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_manifest_structure(sandbox, export, case):
    change, needles = STRUCTURE[case]
    _edit(export, change)
    _refused(sandbox, export, *needles)


def test_manifest_that_is_not_json(sandbox, export):
    (export / "manifest.json").write_text('{"format_version": 1,')
    _refused(sandbox, export, "not valid JSON")


def test_model_value_that_does_not_fit_the_graphs(sandbox, export):
    """A value in range that the graphs disagree with: onnxruntime's error, as one line."""
    _edit(export, lambda d: _set(d, "model", "latent_channels", 8))
    _refused(sandbox, export, "onnxruntime failed running transformer_step.onnx", "re-export")


def test_components_swapped(sandbox, export):
    _edit(export, lambda d: _set(d, "components", "vae_decoder", dict(d["components"]["transformer_step"])))
    _refused(sandbox, export, "declaration says")


# -- 8. damaged graphs, with the sha256 check skipped -----------------------------------------

def test_truncated_graph_with_no_verify(sandbox, export):
    graph = export / "transformer_step.onnx"
    graph.write_bytes(graph.read_bytes()[:5000])
    _refused(sandbox, export, "onnxruntime cannot load", "transformer_step.onnx", extra=("--no-verify",))


def _poison_decoder(export: Path) -> None:
    """NaN in every floating-point weight of the decoder (what a corrupt download could hold)."""
    import onnx
    from onnx import numpy_helper

    path = export / "vae_decoder.onnx"
    model = onnx.load(str(path))
    for index, tensor in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and array.size > 1:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.full_like(array, np.nan), tensor.name))
    onnx.save(model, str(path))


def test_nan_decoder_writes_no_png(sandbox, export):
    _poison_decoder(export)
    _refused(sandbox, export, "the decoded image", "not finite (NaN/Inf)", extra=("--no-verify",))
    # The same with the manifest vouching for the poisoned file (an exporter that went wrong).
    _edit(export, lambda d: _set(d, "components", "vae_decoder", "sha256", _sha(export / "vae_decoder.onnx")))
    _refused(sandbox, export, "the decoded image", "not finite")


# -- 8. eval of two different models -----------------------------------------------------------

def test_eval_of_two_different_models(sandbox, tiny_export, export):
    _edit(export, lambda d: _set(d, "model", "flow_shift", 1.5))
    sandbox.refused("eval", tiny_export, export, "--size", "64", "--steps", "1", needles=("not comparable", "flow_shift"),
                    watch=(tiny_export, export))


def test_eval_json_output_checked_first(sandbox, tiny_export):
    (sandbox.work / "results.json").mkdir()
    sandbox.refused("eval", tiny_export, tiny_export, "--json", "results.json", needles=("is a folder",))
