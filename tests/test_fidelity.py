"""`sana-edge eval`: metrics, export-vs-itself identity, fp32 vs fp16 drift, and bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sana_edge.cli import main
from sana_edge.evaluation import compare_exports
from sana_edge.metrics import cosine, psnr, sqnr_db, ssim

SIZE, STEPS = 64, 3  # tiny: the whole file runs in seconds
PROMPTS = ["a red fox in the snow", "a blue circle on a yellow background"]
CLI_SIZE = ["--size", str(SIZE), "--steps", str(STEPS)]


def _strict_json(path):
    """Parse as strict JSON: Infinity / NaN literals are refused."""
    def refuse(literal):
        raise ValueError(f"non-standard JSON literal {literal}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _as_float(value):
    return float(value)  # "inf" -> inf, numbers unchanged


@pytest.fixture(scope="module")
def fp16_export(tiny_checkpoint, tmp_path_factory):
    from sana_edge.export.exporter import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("export-fp16") / "fp16"
    return export_checkpoint(ExportOptions(str(tiny_checkpoint), out, precision="fp16"), log=lambda _: None)


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# fidelity prompts\n\n" + "\n".join(PROMPTS) + "\n   \n")
    return path


# -- metrics ---------------------------------------------------------------------------------


def test_psnr_identical_and_known_error():
    image = np.random.default_rng(0).integers(4, 252, (32, 32, 3)).astype(np.uint8)  # +-4 stays in range
    assert psnr(image, image) == math.inf
    assert psnr(image, image + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)  # ~48.13 dB
    assert psnr(image, image - 4) == pytest.approx(20 * math.log10(255 / 4), abs=1e-9)


def test_ssim_identical_is_one_and_falls_with_noise():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48]
    image = np.stack([x * 5, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)  # smooth gradients
    assert ssim(image, image) == 1.0
    assert ssim(image[..., 0], image[..., 0]) == 1.0  # grayscale too
    scores = [ssim(image, np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8)) for s in (2, 8, 32)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0, scores
    assert ssim(image, 255 - image) < 0.5


def test_ssim_matches_reference_definition():
    """Cross-check the numpy separable filter against a direct 2-D 'valid' correlation."""
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (30, 27, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def reference(p, q):
        p, q = p.astype(float), q.astype(float)
        f = lambda z: signal.correlate2d(z, window, "valid")  # noqa: E731
        mp, mq = f(p), f(q)
        vp, vq, cov = f(p * p) - mp**2, f(q * q) - mq**2, f(p * q) - mp * mq
        return np.mean(((2 * mp * mq + c1) * (2 * cov + c2)) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))

    expected = np.mean([reference(a[..., c], b[..., c]) for c in range(3)])
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)


def test_sqnr_and_cosine_known_values():
    signal = np.ones(1000)
    assert sqnr_db(signal, signal) == math.inf
    assert sqnr_db(signal, signal + 0.1) == pytest.approx(20.0)  # power 1 vs 0.01
    assert sqnr_db(signal, signal * 0.99) == pytest.approx(40.0)
    a = np.random.default_rng(0).standard_normal(500).astype(np.float32)
    assert cosine(a, a) == 1.0
    assert cosine(a, 3 * a) == pytest.approx(1.0, abs=1e-12)
    assert cosine(a, -a) == pytest.approx(-1.0, abs=1e-12)
    assert cosine([1.0, 0.0], [0.0, 1.0]) == 0.0


# -- end to end ------------------------------------------------------------------------------


def _assert_identical(result):
    records = result["prompts"]
    assert [r["prompt"] for r in records] == PROMPTS
    for r in records:
        assert _as_float(r["psnr_db"]) == math.inf
        assert r["ssim"] == 1.0
        for key in ("text_encoder_cosine", "transformer_cosine", "decoder_cosine"):
            assert r[key] >= 1 - 1e-12, (key, r[key])
        assert len(r["latent_sqnr_db"]) == STEPS
        assert all(_as_float(v) == math.inf for v in r["latent_sqnr_db"])
    assert all(_as_float(v) == math.inf for v in result["summary"]["latent_sqnr_db_per_step"])


def test_export_against_itself_is_identical(tiny_export):
    result = compare_exports(tiny_export, tiny_export, PROMPTS, size=SIZE, steps=STEPS, seed=3)
    _assert_identical(result)
    assert result["config"]["precision_a"] == result["config"]["precision_b"] == "fp32"
    assert [r["noise_seed"] for r in result["prompts"]] == [3, 4]
    assert result["summary"]["psnr_db"]["min"] == math.inf


def test_cli_export_against_itself(capsys, tiny_export, prompts_file, tmp_path):
    out = tmp_path / "eval.json"
    code = main(["eval", str(tiny_export), str(tiny_export), *CLI_SIZE, "--prompts", str(prompts_file), "--json", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    for label in ("text-encoder cosine", "transformer cosine", "decoder cosine", "PSNR", "SSIM", "latency", "per-step"):
        assert label in stdout, label
    result = _strict_json(out)
    _assert_identical(result)
    assert result["summary"]["psnr_db"]["min"] == "inf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "prompts.txt"]  # no temp file left


def test_fp16_against_fp32_measures_a_real_difference(tiny_export, fp16_export):
    result = compare_exports(tiny_export, fp16_export, PROMPTS, size=128, steps=4)
    assert result["config"]["precision_b"] == "fp16"
    for r in result["prompts"]:
        assert math.isfinite(r["psnr_db"]) and r["psnr_db"] > 25, r["psnr_db"]
        assert 0.9 < r["ssim"] < 1.0
        for key in ("text_encoder_cosine", "transformer_cosine", "decoder_cosine"):
            assert 0.99 < r[key] < 1.0, (key, r[key])
        assert all(math.isfinite(v) and v > 20 for v in r["latent_sqnr_db"]), r["latent_sqnr_db"]
        assert r["latency_a_s"] > 0 and r["latency_b_s"] > 0
    per_step = result["summary"]["latent_sqnr_db_per_step"]
    assert len(per_step) == 4 and all(math.isfinite(v) for v in per_step)
    json.dumps(result, allow_nan=False)  # finite result is strict JSON as is


def test_eval_without_torch(tiny_export, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        for blocked in ("torch", "diffusers", "transformers", "onnx", "onnxscript"):
            sys.modules[blocked] = None
        from sana_edge.cli import main
        code = main(["eval", {str(tiny_export)!r}, {str(tiny_export)!r}, "--size", "64", "--steps", "2",
                     "--json", {str(tmp_path / 'e.json')!r}])
        assert code == 0, code
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


# -- bad input -------------------------------------------------------------------------------


def _assert_refused(capsys, tmp_path, export_a, export_b, *extra, needles=()):
    out = tmp_path / "result.json"
    code = main(["eval", str(export_a), str(export_b), *map(str, extra), "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    assert not list(tmp_path.glob(".result.json*"))


def test_missing_prompts_file(capsys, tiny_export, tmp_path):
    _assert_refused(capsys, tmp_path, tiny_export, tiny_export, "--prompts", tmp_path / "nope.txt",
                    needles=("nope.txt", "does not exist"))


def test_prompts_file_without_prompts(capsys, tiny_export, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n   \n")
    _assert_refused(capsys, tmp_path, tiny_export, tiny_export, "--prompts", empty, needles=("no prompts",))


def test_size_not_a_multiple_of_the_vae_factor(capsys, tiny_export, tmp_path):
    _assert_refused(capsys, tmp_path, tiny_export, tiny_export, "--size", 100, "--steps", 1,
                    needles=("size 100", "multiple of 32"))


@pytest.mark.parametrize("size", [0, -64])
def test_size_outside_its_range(capsys, tiny_export, tmp_path, size):
    """Sizes below 32 px are refused while parsing (sana_edge.checks.IMAGE_SIDE), before any model loads."""
    _assert_refused(capsys, tmp_path, tiny_export, tiny_export, "--size", size, "--steps", 1,
                    needles=(f"'--size': {size} is outside 32..8192",))


def test_zero_steps(capsys, tiny_export, tmp_path):
    _assert_refused(capsys, tmp_path, tiny_export, tiny_export, "--size", SIZE, "--steps", 0, needles=("steps",))


@pytest.mark.parametrize("key,value", [("latent_channels", 16), ("vae_scale_factor", 8)])
def test_exports_that_are_not_comparable(capsys, tiny_export, tmp_path, key, value):
    other = tmp_path / "other"
    shutil.copytree(tiny_export, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"][key] = value
    (other / "manifest.json").write_text(json.dumps(manifest))
    _assert_refused(capsys, tmp_path, tiny_export, other, *CLI_SIZE, needles=("not comparable", key))


def test_missing_export_folder(capsys, tiny_export, tmp_path):
    _assert_refused(capsys, tmp_path, tiny_export, tmp_path / "nothing", *CLI_SIZE, needles=("does not exist",))


def test_json_into_missing_folder(capsys, tiny_export, tmp_path):
    out = tmp_path / "no-such-dir" / "r.json"
    code = main(["eval", str(tiny_export), str(tiny_export), *CLI_SIZE, "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and "does not exist" in err, err
    assert not out.parent.exists()
