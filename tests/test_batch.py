"""`sana-edge batch` in-process: one PNG per item equal to `sana-edge run`, index.jsonl, resume
with verified files, failures recorded while the rest go on, one-line input errors."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from sana_edge.cli import main


def _index(outdir):
    return [json.loads(line) for line in (outdir / "index.jsonl").read_text().splitlines()]


def _batch(prompts, outdir, export, *extra):
    return main(["batch", str(prompts), "-o", str(outdir), "--model", str(export), "--steps", "2",
                 "--size", "64x64", *extra])


def test_text_batch_makes_run_images_and_resumes(tiny_export, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n\na blue bird\na green frog\n")
    out = tmp_path / "out"
    assert _batch(prompts, out, tiny_export, "--seed", "10") == 0
    records = _index(out)
    assert [r["prompt"] for r in records] == ["a red fox", "a blue bird", "a green frog"]
    assert [r["seed"] for r in records] == [10, 11, 12]  # base seed + position
    assert {r["status"] for r in records} == {"ok"} and all(r["node"]["host"] for r in records)
    assert all({"text_encoder", "denoise", "decode", "total"} <= set(r["timings"]) for r in records)
    # the second item is `sana-edge run` with its seed
    run_png = tmp_path / "run.png"
    assert main(["run", "a blue bird", "--model", str(tiny_export), "--seed", "11", "--steps", "2",
                 "--width", "64", "--height", "64", "-o", str(run_png)]) == 0
    made = np.asarray(Image.open(out / records[1]["file"]))
    assert made.shape == (64, 64, 3) and (made == np.asarray(Image.open(run_png))).all()

    stamps = {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in records}
    assert _batch(prompts, out, tiny_export, "--seed", "10") == 0  # nothing to do
    assert len(_index(out)) == 3
    assert {f: (out / f).stat().st_mtime_ns for f in stamps} == stamps

    (out / records[2]["file"]).write_bytes(b"truncated")  # a damaged image is made again, the rest not
    assert _batch(prompts, out, tiny_export, "--seed", "10") == 0
    assert len(_index(out)) == 3
    assert (out / records[0]["file"]).stat().st_mtime_ns == stamps[records[0]["file"]]
    assert Image.open(out / records[2]["file"]).size == (64, 64)


def test_jsonl_settings_and_a_failing_item(tiny_export, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"prompt": "a cat", "seed": 3, "size": "128x64", "steps": 1},
             {"prompt": "a dog", "size": "100x100"},  # not a multiple of 32: fails, the rest go on
             {"prompt": "a cow", "negative_prompt": "blurry", "guidance_scale": 2.0}]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert _batch(prompts, out, tiny_export) == 1
    assert "1 item(s) failed" in capsys.readouterr().err
    cat, dog, cow = _index(out)
    assert (cat["status"], cat["seed"], cat["size"], cat["steps"]) == ("ok", 3, "128x64", 1)
    assert Image.open(out / cat["file"]).size == (128, 64)
    assert dog["status"] == "error" and "multiple of 32" in dog["error"] and "file" not in dog
    assert (cow["status"], cow["negative_prompt"], cow["guidance_scale"], cow["seed"]) == ("ok", "blurry", 2.0, 2)
    assert len(list(out.glob("*.png"))) == 2 and not list(out.glob(".*tmp"))


def test_an_edited_line_is_a_new_item(tiny_export, tmp_path):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("a red fox\n")
    assert _batch(prompts, out, tiny_export) == 0
    prompts.write_text("a grey fox\n")
    assert _batch(prompts, out, tiny_export) == 0
    records = _index(out)
    assert [r["prompt"] for r in records] == ["a red fox", "a grey fox"] and records[0]["key"] != records[1]["key"]


def test_bad_input_is_one_line_and_writes_nothing(tiny_export, tmp_path, capsys):
    out = tmp_path / "out"
    cases = {
        "missing.txt": None,
        "bad.jsonl": '{"prompt": "a", "colour": "red"}\n',
        "notjson.jsonl": '{"prompt": \n',
        "badseed.jsonl": '{"prompt": "a", "seed": "one"}\n',
        "empty.txt": "\n\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        assert _batch(path, out, tiny_export) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, (name, err)
    assert not out.exists()
    assert main(["batch", str(path), "-o", str(out), "--workers", "2"]) == 2
