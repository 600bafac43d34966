"""The shapes task (dataset, captions, scorer) and the shipped shapes-SANA through the exported
runtime: a regression in export, runtime or quantization that breaks images fails here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sana_edge import shapes


def test_scorer_reads_dataset_images_perfectly():
    items = shapes.dataset(seed=7, count=150, size=128, two_shapes=0.3, split="all")
    summary = shapes.summarize([shapes.score_image(image, caption) for image, caption in items])
    assert summary["count"] == 150
    assert summary["accuracy"].keys() == set(shapes.ATTRIBUTES)
    assert summary["all_correct"] == 1.0, summary


def test_scorer_catches_each_wrong_attribute():
    rng = np.random.default_rng(0)
    scene = shapes.Scene((shapes.ShapeSpec("circle", "red", "large", "top left"),), "blue")
    image = shapes.render(scene, rng, 128)
    assert all(shapes.score_image(image, scene.caption).values())
    wrong = {
        "background": "a large red circle at the top left on a white background",
        "colour": "a large green circle at the top left on a blue background",
        "shape": "a large red square at the top left on a blue background",
        "size": "a small red circle at the top left on a blue background",
        "position": "a large red circle at the bottom right on a blue background",
    }
    for attribute, caption in wrong.items():
        verdict = shapes.score_image(image, caption)
        assert verdict[attribute] is False, (attribute, verdict)
        assert all(v for k, v in verdict.items() if k != attribute), (attribute, verdict)


def test_blank_and_noise_images_score_low():
    caption = "a small yellow triangle on the right on a black background"
    blank = Image.new("RGB", (128, 128), shapes.PALETTE["black"])
    verdict = shapes.score_image(blank, caption)
    assert verdict["background"] and not verdict["colour"] and not verdict["shape"] and not verdict["position"]
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    assert shapes.summarize([shapes.score_image(noise, caption)])["overall"] <= 0.4


def test_captions_round_trip_and_bad_captions_are_refused():
    rng = np.random.default_rng(3)
    for _ in range(200):
        scene = shapes.sample_scene(rng, two_shapes=0.3)
        assert shapes.parse_caption(scene.caption) == scene
    assert shapes.is_caption("A green triangle on the right on a white background.")
    for bad in ("a red fox in the snow", "a pink circle on a blue background", "a red circle"):
        assert not shapes.is_caption(bad)
        with pytest.raises(ValueError, match="not a shapes caption"):
            shapes.parse_caption(bad)


def test_dataset_is_seeded_and_splits_are_disjoint():
    a = shapes.dataset(seed=5, count=20, size=64)
    b = shapes.dataset(seed=5, count=20, size=64)
    assert [c for _, c in a] == [c for _, c in b]
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for (x, _), (y, _) in zip(a, b))
    train = {c for _, c in shapes.dataset(seed=1, count=400, size=32, split="train")}
    held = {c for _, c in shapes.dataset(seed=1, count=40, size=32, split="held_out")}
    assert held and not train & held
    assert all(shapes.is_held_out(c) for c in held)


def test_training_script_writes_a_loadable_checkpoint(tmp_path):
    """A few steps of `sana-edge train-tiny` end to end: the real classes train, and the folder
    it writes is a SANA checkpoint the exporter accepts (the full run is benchmarks-scale)."""
    import json

    from sana_edge.export.checkpoint import check_sana_folder, load_sana_pipeline
    from sana_edge.export.train_shapes import TrainConfig, train

    cfg = TrainConfig(ae_steps=2, ae_batch=4, dit_steps=2, dit_batch=8, dit_scenes=16, eval_captions=0, log_every=1)
    log = train(tmp_path, cfg)
    check_sana_folder(tmp_path)
    pipe = load_sana_pipeline(tmp_path)
    assert pipe.vae.config.scaling_factor == pytest.approx(log["latent_scaling_factor"])
    assert pipe.transformer.config.sample_size * 32 == 128
    assert len(log["losses"]["autoencoder"]) == 2 and len(log["losses"]["transformer"]) == 2
    assert json.loads((tmp_path / "train_log.json").read_text())["config"]["seed"] == 0
    assert shapes.is_caption((tmp_path / "calibration_prompts.txt").read_text().splitlines()[1])


def test_train_tiny_refuses_bad_options(tmp_path, capsys):
    from sana_edge.cli import main

    assert main(["train-tiny", str(tmp_path / "m"), "--dit-steps", "0"]) == 2
    assert "'--dit-steps': 0 is outside 1..1000000" in capsys.readouterr().err  # ranged while parsing
    assert not (tmp_path / "m").exists()
