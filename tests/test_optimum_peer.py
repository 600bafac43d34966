"""optimum-onnx itself, in its own venv (benchmarks.peer_envs; minutes the first time, so `slow`):
optimum exports the tiny checkpoint and sana-edge imports and runs it; optimum's ORTSanaPipeline
loads the folder `sana-edge convert` writes and runs it. Images agree with sana-edge's."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from sana_edge import SanaEdgePipeline
from sana_edge.cli import main

PROMPT, STEPS = "a red fox in the snow", 4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def optimum_python():
    from benchmarks.peer_envs import optimum_env

    return optimum_env()


@pytest.fixture(scope="module")
def latents_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("latents") / "latents.npy"
    np.save(path, np.random.default_rng(7).standard_normal((1, 32, 8, 8)).astype(np.float32))
    return path


def _sana_edge_image(export, latents_file):
    image = SanaEdgePipeline.from_export(export)(PROMPT, negative_prompt="", height=256, width=256, steps=STEPS,
                                                 latents=np.load(latents_file))
    return np.asarray(image).astype(np.int16)


def _optimum_image(python, folder, latents_file, out):
    from benchmarks.peer_envs import ROOT

    subprocess.run([str(python), "-m", "benchmarks.optimum_peer", "generate", str(folder), PROMPT, str(latents_file),
                    str(out), "--steps", str(STEPS)], cwd=ROOT, check=True)
    return np.asarray(Image.open(out).convert("RGB")).astype(np.int16)


def test_optimum_export_imports_into_sana_edge(optimum_python, tiny_checkpoint, tiny_single_export, latents_file, tmp_path, capsys):
    from benchmarks.peer_envs import checkpoint_for_optimum

    source = checkpoint_for_optimum(tiny_checkpoint, tmp_path / "checkpoint")
    exported = tmp_path / "optimum-export"
    subprocess.run([str(optimum_python.parent / "optimum-cli"), "export", "onnx", "--model", str(source),
                    "--task", "text-to-image", str(exported)], check=True)
    assert main(["import", str(exported), "-o", str(tmp_path / "imported"), "--checkpoint", str(tiny_checkpoint)]) == 0
    assert "SDPA" in capsys.readouterr().err  # optimum traces Gemma-2 with SDPA: measured and warned
    reference = _sana_edge_image(tiny_single_export, latents_file)
    assert np.abs(_sana_edge_image(tmp_path / "imported", latents_file) - reference).max() <= 2
    # and optimum's own pipeline on its own export draws the same picture
    assert np.abs(_optimum_image(optimum_python, exported, latents_file, tmp_path / "o.png") - reference).max() <= 2


def test_optimum_loads_and_runs_a_converted_export(optimum_python, tiny_single_export, latents_file, tmp_path):
    assert main(["convert", str(tiny_single_export), "-o", str(tmp_path / "converted")]) == 0
    image = _optimum_image(optimum_python, tmp_path / "converted", latents_file, tmp_path / "c.png")
    assert image.std() > 1
    assert np.abs(image - _sana_edge_image(tiny_single_export, latents_file)).max() <= 2


def test_quick_benchmark_with_every_peer_row(tmp_path):
    """The peers' rows end to end on the tiny model: optimum's worker in its own venv, diffusers
    bf16, the nncf ONNX row and OpenVINO on sana-edge's QDQ int8 graphs."""
    from benchmarks.latency import main

    backends = ["torch-fp32", "torch-bf16", "optimum-fp32", "ort-fp32", "nncf-int8", "ov-qdq-int8"]
    result = main(["--quick", "--backends", ",".join(backends), "--out", str(tmp_path), "--cache", str(tmp_path / "cache")])
    assert all(entry["error"] is None and entry["output_finite"] for entry in result["measurements"])
    rows = result["summary"]["512"]
    assert all(rows[b]["total_s"] > 0 for b in backends)
    assert "optimum venv" in result["versions"]
    qdq = next(e for e in result["measurements"] if e["backend"] == "ov-qdq-int8" and e["stage"] == "step")
    assert any(k.endswith((" u8", " i8")) for k in qdq["runtime_precisions"])  # OpenVINO runs the QDQ graph as int8
