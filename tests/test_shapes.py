"""The shapes task (dataset, captions, scorer) and the shipped shapes-SANA through the exported
runtime: a regression in export, runtime or quantization that breaks images fails here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sana_edge import shape_captions, shapes


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
    for bad in ("a red fox in the snow", "a pink circle on a blue background", "a red circle",
                "a red circle on a blue background and a green background", "a red circle square on a blue background",
                "a red circle at the top bottom on a blue background", "a red circle near the top on a blue background"):
        assert not shapes.is_caption(bad), bad
        with pytest.raises(ValueError, match="not a shapes caption"):
            shapes.parse_caption(bad)


def test_parser_reads_every_phrasing_the_generator_writes():
    """Every template (held out or not), with random synonyms, articles, case and punctuation."""
    rng = np.random.default_rng(11)
    for _ in range(400):
        scene = shapes.sample_scene(rng)
        for template in shape_captions.TEMPLATES:
            text = shape_captions.style(shape_captions.render_template(template, scene, rng), rng)
            assert shapes.parse_caption(text) == scene, (template, text)
    examples = {
        "A big red circle in the middle, white background": ("large", "centre", "white"),
        "a large red circle at the centre on a white background": ("large", "centre", "white"),
        "little yellow triangle in the upper-right corner of a blue background.": ("small", "top right", "blue"),
        "On a black background, a small orange circle on the left side!": ("small", "left", "black"),
        "green square, top center, purple background": (None, "top", "purple"),
    }
    for text, (size, position, background) in examples.items():
        scene = shapes.parse_caption(text)
        assert (scene.objects[0].size, scene.objects[0].position, scene.background) == (size, position, background), text


def _signature(text: str) -> str:
    """A caption's word order with the attributes abstracted: "O P on B", "P , O , B"..."""
    import re

    colours, shapes_ = "|".join(shapes.PALETTE), "|".join(shapes.SHAPES)
    position = r"(?:top|upper|bottom|lower|left|right|centre|center|middle|side|corner|[ -])+"
    text = re.sub(r"[.!]$", "", text.lower()).replace(",", " , ")
    text = re.sub(rf"\b(?:(on|against|of|with) )?(?:an? )?(?:{colours}) background", r" \1 B ", text)
    text = re.sub(rf"\b(?:(?:at|in|on) )(?:the )?{position}(?=\s|$)", " P ", text)
    text = re.sub(rf"\b(?:an? )?(?:small |little |large |big )?(?:{colours}) (?:{shapes_})", " O ", text)
    return " ".join(text.split())


def test_training_captions_avoid_held_out_templates_and_pairs():
    from sana_edge.export.shapes_text import training_caption

    rng = np.random.default_rng(5)
    held_signatures = set()
    for template in shape_captions.HELD_OUT_TEMPLATES:
        scene = shapes.Scene((shapes.ShapeSpec("circle", "red", "large", "top left"),), "blue")
        held_signatures.add(_signature(shape_captions.render_template(template, scene, rng)))
    assert len(held_signatures) == len(shape_captions.HELD_OUT_TEMPLATES)
    for _ in range(3000):
        scene = shapes.sample_scene(rng)
        text = training_caption(scene, rng, p_grammar=0.3)
        assert shapes.parse_caption(text) == scene
        assert not shape_captions.has_held_out_pair(text), text
        if scene.objects[0].position:
            assert _signature(text) not in held_signatures, text
    for caption in shapes.held_out_captions(40, seed=1, kind="template"):
        if shapes.parse_caption(caption).objects[0].position:
            assert _signature(caption) in held_signatures, caption


def test_held_out_caption_kinds():
    grammar = shapes.held_out_captions(30, seed=2, kind="grammar")
    template = shapes.held_out_captions(30, seed=2, kind="template")
    pair = shapes.held_out_captions(30, seed=2, kind="pair")
    assert all(shapes.parse_caption(c).caption == c for c in grammar)
    for caption in grammar + template + pair:
        assert shapes.is_held_out(caption)
    assert all(shape_captions.has_held_out_pair(c) for c in pair)
    assert not any(shape_captions.has_held_out_pair(c) for c in template)
    assert sum(shapes.parse_caption(c).caption != c for c in template) == 30
    with pytest.raises(ValueError, match="unknown caption kind"):
        shapes.held_out_captions(1, seed=0, kind="nope")


def test_committed_eval_set_is_the_generated_one():
    """benchmarks/shapes_eval_set.json is fixed (CI scores a slice of it); it must still be what
    the generator writes, so the benchmark and the test measure the same captions."""
    import json

    from benchmarks.shapes_score import EVAL_COUNTS, EVAL_SET, build_eval_set

    committed = json.loads(EVAL_SET.read_text())
    assert committed == build_eval_set()
    assert {k: len(v) for k, v in committed["captions"].items()} == EVAL_COUNTS


def test_dataset_is_seeded_and_splits_are_disjoint():
    a = shapes.dataset(seed=5, count=20, size=64)
    b = shapes.dataset(seed=5, count=20, size=64)
    assert [c for _, c in a] == [c for _, c in b]
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for (x, _), (y, _) in zip(a, b))
    train = {c for _, c in shapes.dataset(seed=1, count=400, size=32, split="train")}
    held = {c for _, c in shapes.dataset(seed=1, count=40, size=32, split="held_out")}
    assert held and not train & held
    assert all(shapes.is_held_out(c) for c in held)


def test_training_caption_embeddings_equal_the_runtime_path(tmp_path):
    """Training runs the shared instruction prefix once (KV cache) and only the caption tokens per
    row; the DiT must see exactly what the runtime feeds it: sana_edge.prompt's tokens (CHI,
    lower case) through the whole text encoder, then BOS + the last 299 positions; the empty
    negative prompt without CHI."""
    import torch
    from diffusers import SanaPipeline

    from sana_edge.export.checkpoint import default_complex_human_instruction
    from sana_edge.export.shapes_text import CaptionEncoder, build_tokenizer
    from sana_edge.export.train_shapes import _new_text_encoder
    from sana_edge.prompt import PromptTokenizer

    chi = default_complex_human_instruction(SanaPipeline)
    tokenizer = build_tokenizer(chi, seed=0)
    tokenizer.save_pretrained(tmp_path)
    torch.manual_seed(0)
    text_encoder = _new_text_encoder(len(tokenizer)).eval()
    captions = ["A big red circle at the centre, white background!", "a red square on a white background",
                "on a blue background, a little green triangle in the upper-left corner."]
    drop = [False, True, False]
    runtime = PromptTokenizer(tmp_path / "tokenizer.json", chi, 300)
    with torch.no_grad():
        embeds, mask = CaptionEncoder(tmp_path / "tokenizer.json", chi)(text_encoder, captions, drop)
        for i, caption in enumerate(captions):
            tokens = runtime.negative("") if drop[i] else runtime.positive(caption)
            hidden = text_encoder(input_ids=torch.from_numpy(tokens.input_ids),
                                  attention_mask=torch.from_numpy(tokens.attention_mask)).last_hidden_state.numpy()
            keep = tokens.attention_mask
            if not drop[i]:
                hidden, keep = runtime.select(hidden, keep)
            want = hidden[0][keep[0].astype(bool)]
            got = embeds[i][mask[i].bool()].numpy()
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-5)
            assert not embeds[i][~mask[i].bool()].any()  # masked positions carry nothing


def test_training_script_writes_a_loadable_checkpoint(tmp_path):
    """A few steps of `sana-edge train-tiny` end to end: the real classes train, and the folder
    it writes is a SANA checkpoint the exporter accepts (the full run is benchmarks-scale). A
    second run with the same seed and autoencoder settings reuses the cached DC-AE."""
    import json

    import torch

    from sana_edge.export.checkpoint import check_sana_folder, load_sana_pipeline
    from sana_edge.export.train_shapes import TrainConfig, train

    cfg = TrainConfig(ae_steps=2, ae_batch=4, dit_steps=2, dit_batch=8, dit_scenes=16, eval_captions=0, log_every=1,
                      threads=1)
    cache = tmp_path / "ae-cache"
    log = train(tmp_path / "a", cfg, autoencoder_cache=cache)
    check_sana_folder(tmp_path / "a")
    pipe = load_sana_pipeline(tmp_path / "a")
    assert pipe.vae.config.scaling_factor == pytest.approx(log["latent_scaling_factor"])
    assert pipe.transformer.config.sample_size * 32 == 128
    assert len(log["losses"]["autoencoder"]) == 2 and len(log["losses"]["transformer"]) == 2
    assert not log["autoencoder_reused_from_cache"] and log["autoencoder_reconstruction_score"]
    assert json.loads((tmp_path / "a" / "train_log.json").read_text())["config"]["seed"] == 0
    assert shapes.is_caption((tmp_path / "a" / "calibration_prompts.txt").read_text().splitlines()[1])

    again = train(tmp_path / "b", cfg, autoencoder_cache=cache)
    assert again["autoencoder_reused_from_cache"]
    assert again["losses"]["autoencoder"] == log["losses"]["autoencoder"]
    vae_b = load_sana_pipeline(tmp_path / "b").vae
    assert all(torch.equal(a, b) for a, b in zip(pipe.vae.parameters(), vae_b.parameters()))
    other = train(tmp_path / "c", TrainConfig(**{**cfg.__dict__, "ae_steps": 3}), autoencoder_cache=cache)
    assert not other["autoencoder_reused_from_cache"]  # other settings: trained, cache replaced


def test_train_tiny_refuses_bad_options(tmp_path, capsys):
    from sana_edge.cli import main

    assert main(["train-tiny", str(tmp_path / "m"), "--dit-steps", "0"]) == 2
    assert "'--dit-steps': 0 is outside 1..1000000" in capsys.readouterr().err  # ranged while parsing
    assert not (tmp_path / "m").exists()


def test_train_tiny_init_from_fine_tunes_a_trained_checkpoint(tmp_path):
    """--init-from keeps the checkpoint's tokenizer, DC-AE and latent scaling (no autoencoder
    stage) and trains its DiT and text encoder on from their weights, not from a fresh init."""
    import json

    import torch

    from sana_edge.default_model import shipped_checkpoint
    from sana_edge.export.checkpoint import load_sana_pipeline
    from sana_edge.export.train_shapes import TrainConfig, train

    source = shipped_checkpoint()
    cfg = TrainConfig(dit_steps=1, dit_batch=4, dit_scenes=8, eval_captions=0, log_every=1, threads=1)
    log = train(tmp_path / "ft", cfg, init_from=source)
    before, after = load_sana_pipeline(source), load_sana_pipeline(tmp_path / "ft")
    assert log["init_from"] == str(source) and log["losses"]["autoencoder"] == []
    assert (tmp_path / "ft" / "tokenizer" / "tokenizer.json").read_text() == (source / "tokenizer" / "tokenizer.json").read_text()
    assert after.vae.config.scaling_factor == pytest.approx(before.vae.config.scaling_factor)
    assert all(torch.equal(a, b) for a, b in zip(before.vae.parameters(), after.vae.parameters()))
    for name in ("transformer", "text_encoder"):
        old = torch.cat([p.flatten() for p in getattr(before, name).parameters()])
        new = torch.cat([p.flatten() for p in getattr(after, name).parameters()])
        assert not torch.equal(old, new)  # trained ...
        assert torch.nn.functional.cosine_similarity(old, new, dim=0) > 0.99  # ... on from the checkpoint's weights
    assert json.loads((tmp_path / "ft" / "train_log.json").read_text())["models"]["params"]["transformer"] == \
        sum(p.numel() for p in before.transformer.parameters())


def test_train_tiny_new_autoencoder_under_a_frozen_trained_text_encoder(tmp_path):
    """--init-from with --new-autoencoder and --text-lr 0: a new DC-AE of the training config's
    shape and its own latent scaling; the DiT trains on from the checkpoint's weights; the text
    encoder and tokenizer stay bit-identical."""
    import torch

    from sana_edge.default_model import shipped_checkpoint
    from sana_edge.export.checkpoint import load_sana_pipeline
    from sana_edge.export.train_shapes import TrainConfig, train, vae_config

    source = shipped_checkpoint()
    cfg = TrainConfig(ae_steps=2, ae_batch=2, new_autoencoder=True, text_lr=0.0, dit_steps=1, dit_batch=4,
                      dit_scenes=8, eval_captions=0, log_every=1, threads=1)
    log = train(tmp_path / "new", cfg, init_from=source, autoencoder_cache=tmp_path / "cache")
    before, after = load_sana_pipeline(source), load_sana_pipeline(tmp_path / "new")
    assert list(after.vae.config.decoder_block_out_channels) == list(vae_config()["decoder_block_out_channels"])
    assert len(log["losses"]["autoencoder"]) == 2 and not log["autoencoder_reused_from_cache"]
    assert after.vae.config.scaling_factor == pytest.approx(log["latent_scaling_factor"])
    assert after.vae.config.scaling_factor != pytest.approx(before.vae.config.scaling_factor)
    assert all(torch.equal(a, b) for a, b in zip(before.text_encoder.parameters(), after.text_encoder.parameters()))
    old = torch.cat([p.flatten() for p in before.transformer.parameters()])
    new = torch.cat([p.flatten() for p in after.transformer.parameters()])
    assert not torch.equal(old, new) and torch.nn.functional.cosine_similarity(old, new, dim=0) > 0.99


def test_train_tiny_init_from_must_be_a_checkpoint(tmp_path, capsys):
    from sana_edge.cli import main

    assert main(["train-tiny", str(tmp_path / "m"), "--init-from", str(tmp_path / "missing")]) == 2
    assert "--init-from" in capsys.readouterr().err and not (tmp_path / "m").exists()
    (tmp_path / "empty").mkdir()
    assert main(["train-tiny", str(tmp_path / "m"), "--init-from", str(tmp_path / "empty"), "--dit-steps", "1"]) == 2
    assert "has no tokenizer/ folder" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(["train-tiny", str(tmp_path / "m"), "--dit-lr", "0"]) == 2
    assert "--dit-lr must be above 0" in capsys.readouterr().err
    assert main(["train-tiny", str(tmp_path / "m"), "--text-lr", "-1"]) == 2
    assert "--text-lr must be 0 (a frozen text encoder) or above (got -1.0)" in capsys.readouterr().err
    assert main(["train-tiny", str(tmp_path / "m"), "--new-autoencoder"]) == 2
    assert "--new-autoencoder replaces the autoencoder of an --init-from checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_shapes_score_counts_changed_verdicts_and_scores_per_kind():
    from benchmarks.shapes_score import changed_verdicts, score_images

    right = {"background": True, "colour": True, "shape": True}
    wrong_shape = {**right, "shape": False}
    reference = {"grammar": [right, right], "template": [right, wrong_shape]}
    other = {"grammar": [right, wrong_shape], "template": [right, wrong_shape]}
    assert changed_verdicts(reference, reference) == 0
    assert changed_verdicts(other, reference) == 1
    scores = score_images(other)
    assert set(scores) == {"grammar", "template", "all"}
    assert scores["all"]["accuracy"]["shape"] == pytest.approx(0.5) and scores["grammar"]["all_correct"] == pytest.approx(0.5)


def test_autoencoder_benchmark_scores_the_shipped_decoder(tmp_path):
    """benchmarks/shapes_autoencoder.py on the shipped DC-AE: its reconstructions of held-out
    scenes keep the shape class (the first autoencoder drew small squares and triangles as blobs,
    61% on 200 scenes; this one 97%), and the report is written."""
    import json

    from benchmarks.shapes_autoencoder import main as autoencoder_main
    from sana_edge.default_model import shipped_checkpoint

    assert autoencoder_main(["--vae", f"shipped={shipped_checkpoint() / 'vae'}", "--count", "16",
                             "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "shapes_autoencoder.json").read_text())["autoencoders"]["shipped"]
    assert result["reconstruction"]["summary"]["accuracy"]["shape"] >= 0.9
    assert sum(result["reconstruction"]["shape_by_cell"].values()) > 0
    assert "| shipped |" in (tmp_path / "shapes_autoencoder.md").read_text()
