"""optimum-onnx interop without optimum: the tests build optimum's Sana folder layout themselves
(as optimum-onnx 0.1.0 writes it, FIELD_NOTES.md). `sana-edge convert` then `sana-edge import`
round-trips an export; an optimum-style folder imports, with the SDPA text encoder warned about."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.cli import main

# optimum-onnx's tensor names, written out here independently of sana_edge.components.
OPTIMUM_NAMES = {"latents": "hidden_states", "velocity": "out_hidden_states", "latent": "latent_sample", "image": "sample"}
CHECKPOINT_FOLDER = {"text_encoder": "text_encoder", "transformer": "transformer", "vae_decoder": "vae"}


def _image(export):
    latents = np.random.default_rng(11).standard_normal((1, 32, 4, 4)).astype(np.float32)
    pipe = SanaEdgePipeline.from_export(export)
    image = pipe("a red fox in the snow", negative_prompt="", height=128, width=128, steps=3, latents=latents)
    return np.asarray(image).astype(np.int16)


def _rename(graph: onnx.ModelProto, mapping: dict) -> None:
    for value in [*graph.graph.input, *graph.graph.output]:
        value.name = mapping.get(value.name, value.name)
    for node in graph.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def _drop_softcapping(graph: onnx.ModelProto) -> None:
    """What tracing Gemma-2 with SDPA does to the graph: no tanh(scores / cap) * cap."""
    for node in graph.graph.node:
        if node.op_type == "Tanh" and "self_attn" in node.name:
            node.op_type = "Identity"


@pytest.fixture(scope="module")
def optimum_text_encoder(diffusers_pipe, tiny_single_export, tmp_path_factory):
    """Gemma-2 as optimum-cli exports it: whole sequences, no past K/V cache (sana-edge's own
    graph takes a past; the full-sequence graph is traced here from the same weights)."""
    from sana_edge.components import LEGACY_TEXT_ENCODER
    from sana_edge.export.onnx_export import export_component
    from sana_edge.export.wrappers import LegacyTextEncoderWrapper
    from sana_edge.manifest import load_manifest

    path = tmp_path_factory.mktemp("optimum-text") / "text_encoder.onnx"
    dims = load_manifest(tiny_single_export).model.dims()
    export_component(LEGACY_TEXT_ENCODER, LegacyTextEncoderWrapper(diffusers_pipe).eval(), dims, path)
    return path


def make_optimum_folder(export, checkpoint, folder, text_encoder, sdpa=False):
    """An optimum-onnx Sana export of the tiny checkpoint, laid out as optimum writes it."""
    folder.mkdir()
    for name, source in CHECKPOINT_FOLDER.items():
        (folder / name).mkdir()
        graph = onnx.load(str(text_encoder if name == "text_encoder" else export / f"{name}.onnx"))
        _rename(graph, OPTIMUM_NAMES)
        if sdpa and name == "text_encoder":
            _drop_softcapping(graph)
        onnx.save(graph, str(folder / name / "model.onnx"))
        shutil.copy(checkpoint / source / "config.json", folder / name / "config.json")
    (folder / "vae_encoder").mkdir()  # optimum writes the encoder too; text-to-image ignores it
    shutil.copy(checkpoint / "vae" / "config.json", folder / "vae_encoder" / "config.json")
    shutil.copytree(checkpoint / "tokenizer", folder / "tokenizer")
    shutil.copytree(checkpoint / "scheduler", folder / "scheduler")
    index = json.loads((checkpoint / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "GemmaTokenizerFast"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def test_convert_writes_the_layout_optimum_loads(tiny_single_export, tmp_path):
    out = tmp_path / "optimum"
    assert main(["convert", str(tiny_single_export), "-o", str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "SanaPipeline" and index["tokenizer"] == ["transformers", "GemmaTokenizerFast"]
    expected_io = {
        "text_encoder": ({"input_ids", "attention_mask"}, ["last_hidden_state"]),
        "transformer": ({"hidden_states", "encoder_hidden_states", "encoder_attention_mask", "timestep"}, ["out_hidden_states"]),
        "vae_decoder": ({"latent_sample"}, ["sample"]),
    }
    for name, (inputs, outputs) in expected_io.items():
        graph = onnx.load(str(out / name / "model.onnx"))
        assert {i.name for i in graph.graph.input} == inputs
        assert [o.name for o in graph.graph.output] == outputs
        config = json.loads((out / name / "config.json").read_text())
        assert config == json.loads((tiny_single_export / "configs" / CHECKPOINT_FOLDER[name] / "config.json").read_text())
    tokenizer_config = json.loads((out / "tokenizer" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "GemmaTokenizerFast"
    assert (out / "scheduler" / "scheduler_config.json").is_file()


def test_converted_text_encoder_is_the_export_graph_with_an_empty_past(tiny_single_export, optimum_text_encoder, tmp_path):
    """optimum feeds whole sequences: the converted graph has no past K/V, computes what the
    export's graph computes with an empty past, and what optimum's own full-sequence graph does."""
    import onnxruntime as ort

    from sana_edge.components import ATTENTION_MASK, INPUT_IDS
    from sana_edge.manifest import load_manifest

    assert main(["convert", str(tiny_single_export), "-o", str(tmp_path / "optimum")]) == 0
    converted = onnx.load(str(tmp_path / "optimum" / "text_encoder" / "model.onnx"))
    own = onnx.load(str(tiny_single_export / "text_encoder.onnx"))
    assert len(converted.graph.node) < len(own.graph.node)  # the new-K/V outputs' own nodes are gone
    rng = np.random.default_rng(3)
    ids = rng.integers(4, 200, (2, 19)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 11:] = 0
    feeds = {INPUT_IDS: ids, ATTENTION_MASK: mask}
    model = load_manifest(tiny_single_export).model
    past = np.zeros((model.text_layers, 2, model.text_kv_heads, 0, model.text_head_dim), np.float32)
    got = ort.InferenceSession(converted.SerializeToString()).run(["last_hidden_state"], feeds)[0]
    with_past = ort.InferenceSession(own.SerializeToString()).run(
        ["last_hidden_state"], {**feeds, "past_keys": past, "past_values": past})[0]
    plain = ort.InferenceSession(str(optimum_text_encoder)).run(["last_hidden_state"], feeds)[0]
    assert np.array_equal(got, with_past)
    keep = mask.astype(bool)
    np.testing.assert_allclose(got[keep], plain[keep], atol=1e-4 * float(np.abs(plain).max()))


def test_convert_then_import_gives_the_same_image(tiny_single_export, tmp_path):
    assert main(["convert", str(tiny_single_export), "-o", str(tmp_path / "optimum")]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sana-edge's own text encoder keeps soft-capping: no warning
        assert main(["import", str(tmp_path / "optimum"), "-o", str(tmp_path / "back")]) == 0
    manifest = json.loads((tmp_path / "back" / "manifest.json").read_text())
    assert manifest["imported"]["text_encoder_attention"].startswith("eager")
    assert manifest["model"] == json.loads((tiny_single_export / "manifest.json").read_text())["model"]
    assert np.array_equal(_image(tmp_path / "back"), _image(tiny_single_export))


def test_import_optimum_export_validates_and_warns_about_sdpa(tiny_single_export, tiny_checkpoint, optimum_text_encoder, tmp_path,
                                                           capsys):
    folder = make_optimum_folder(tiny_single_export, tiny_checkpoint, tmp_path / "optimum", optimum_text_encoder, sdpa=True)
    assert main(["import", str(folder), "-o", str(tmp_path / "imported"), "--checkpoint", str(tiny_checkpoint)]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "SDPA" in err and "cosine" in err, err
    manifest = json.loads((tmp_path / "imported" / "manifest.json").read_text())
    assert manifest["imported"]["text_encoder_attention"].startswith("sdpa")
    for name in ("transformer", "vae_decoder"):
        assert min(e["cosine"] for e in manifest["components"][name]["validation"]) >= 0.9999
    assert np.abs(_image(tmp_path / "imported") - _image(tiny_single_export)).max() <= 2


def test_import_without_checkpoint_warns_that_sdpa_is_unmeasured(tiny_single_export, tiny_checkpoint, optimum_text_encoder, tmp_path,
                                                           capsys):
    folder = make_optimum_folder(tiny_single_export, tiny_checkpoint, tmp_path / "optimum", optimum_text_encoder, sdpa=True)
    assert main(["import", str(folder), "-o", str(tmp_path / "imported")]) == 0
    assert "--checkpoint" in capsys.readouterr().err
    entries = json.loads((tmp_path / "imported" / "manifest.json").read_text())["components"]["transformer"]["validation"]
    assert entries and all(e["finite"] for e in entries)


@pytest.mark.parametrize("missing", ["transformer/model.onnx", "vae_decoder/config.json", "tokenizer/tokenizer.json"])
def test_import_folder_missing_a_component(tiny_single_export, tiny_checkpoint, optimum_text_encoder, tmp_path, capsys,
                                           missing):
    folder = make_optimum_folder(tiny_single_export, tiny_checkpoint, tmp_path / "optimum", optimum_text_encoder)
    (folder / missing).unlink()
    code = main(["import", str(folder), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert missing.split("/")[0] in err and "optimum-cli export onnx" in err
    assert not (tmp_path / "out").exists()


def test_import_graph_with_other_names(tiny_single_export, tiny_checkpoint, optimum_text_encoder, tmp_path,
                                                           capsys):
    folder = make_optimum_folder(tiny_single_export, tiny_checkpoint, tmp_path / "optimum", optimum_text_encoder)
    graph = onnx.load(str(folder / "vae_decoder" / "model.onnx"))
    _rename(graph, {"latent_sample": "z"})
    onnx.save(graph, str(folder / "vae_decoder" / "model.onnx"))
    code = main(["import", str(folder), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "latent_sample" in err and "'z'" in err, err
    assert not (tmp_path / "out").exists()


def test_convert_refuses_a_split_transformer_with_the_fix(tiny_export, tmp_path, capsys):
    from sana_edge.cli import main

    assert main(["convert", str(tiny_export), "-o", str(tmp_path / "optimum")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--single-transformer" in err, err
    assert not (tmp_path / "optimum").exists()
