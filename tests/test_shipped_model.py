"""The shipped shapes-SANA, exported and run through the torch-free runtime, still draws what its
captions say: a regression in export, runtime or quantization that breaks images fails here.

The captions are a fixed slice of the committed evaluation set (benchmarks/shapes_eval_set.json):
held-out scenes as grammar captions and in held-out paraphrase templates. Thresholds come from
benchmarks/results/shapes_score.md and from this slice measured the same way; they sit a margin
below the measurement so that float differences between CPUs do not flip the test, while broken
images (score ~20-40%) or a lost caption fail it.
"""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge import shapes
from sana_edge.default_model import BUILTIN_NAME, EXAMPLE_PROMPT, default_export_dir, shipped_checkpoint

PER_KIND = 8  # the first 8 captions of each guarded kind of the evaluation set
# Minimum task score per kind of caption on this slice. One wrong attribute in 8 captions costs
# 2.5-4 points of a kind's score, so 0.9 allows ~2 flips; broken images (noise, flat colour, a
# lost caption) score 20-50%. The shipped model (run 3: new autoencoder, README) scores 100% on
# every kind of this slice at fp32 and int8; run 2 (the run-1 autoencoder) scored 100% / 97.5% /
# 95%, and the first shipped model (frozen random text encoder) 40% on the held-out-template
# slice, which this guard fails.
MIN_SCORE = {"grammar": 0.9, "template": 0.9, "pair": 0.9}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The built-in model exported by `sana-edge export` with no arguments (fp32, into the default
    folder under $SANA_EDGE_CACHE) and at int8."""
    from sana_edge.cli import main
    from sana_edge.export.exporter import ExportOptions, export_checkpoint

    home = tmp_path_factory.mktemp("sana-edge-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SANA_EDGE_CACHE", str(home))
        assert main(["export"]) == 0
        fp32 = default_export_dir()
    int8 = home / "int8"
    export_checkpoint(ExportOptions(BUILTIN_NAME, int8, precision="int8"), log=lambda _: None)
    return {"home": home, "fp32": fp32, "int8": int8}


def test_the_model_ships_in_diffusers_layout():
    folder = shipped_checkpoint()
    for part in ("model_index.json", "transformer", "vae", "text_encoder", "tokenizer", "scheduler",
                 "calibration_prompts.txt", "sana_edge_quantization.json", "train_log.json"):
        assert (folder / part).exists(), part
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    assert 1e6 < weights < 20e6


def test_run_works_out_of_the_box_after_export(exports, tmp_path, monkeypatch):
    from PIL import Image

    from sana_edge.cli import main

    monkeypatch.setenv("SANA_EDGE_CACHE", str(exports["home"]))
    out = tmp_path / "example.png"
    assert main(["run", EXAMPLE_PROMPT, "-o", str(out), "--seed", "0"]) == 0
    image = Image.open(out)
    assert image.size == (128, 128)
    assert image.text["sana-edge:prompt"] == EXAMPLE_PROMPT
    assert all(shapes.score_image(image, EXAMPLE_PROMPT).values())


def test_run_without_an_export_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    from sana_edge.cli import main

    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path))
    assert main(["run", EXAMPLE_PROMPT, "-o", str(tmp_path / "x.png")]) == 2
    assert "sana-edge export" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_exported_model_draws_its_captions(exports, precision):
    from benchmarks.shapes_score import NOISE_SEED, load_eval_set

    from sana_edge import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(exports[precision])
    for kind, minimum in MIN_SCORE.items():
        scores = []
        for i, caption in enumerate(load_eval_set(PER_KIND)[kind]):
            image = pipe.generate(caption, steps=20, guidance_scale=4.5, seed=NOISE_SEED + i).image
            assert np.asarray(image).std() > 5  # not a flat image
            scores.append(shapes.score_image(image, caption))
        summary = shapes.summarize(scores)
        assert summary["overall"] >= minimum, (kind, summary)
