"""Every command-line mistake ends in one line on stderr, exit code 2, no traceback and nothing
written (issue 12, items 1, 5, 7, 8 and 9): the real entry point in a subprocess."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import assert_one_line_error, run_cli

RUN = ("--steps", "1", "--height", "64", "--width", "64", "--seed", "0")


def _latent_shape(export: Path) -> tuple:
    model = json.loads((export / "manifest.json").read_text())["model"]
    return (1, model["latent_channels"], 64 // model["vae_scale_factor"], 64 // model["vae_scale_factor"])


# -- 1. usage mistakes -----------------------------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (("run",), ("Missing argument", "sana-edge run --help")),
    (("run", "a fox", "--steps", "abc"), ("'--steps'", "integer")),
    (("run", "a fox", "--bogus"), ("No such option: --bogus",)),
    (("frob",), ("No such command 'frob'",)),
    (("export", "--precision"), ("--precision", "requires an argument")),
    (("eval", "only-one"), ("Missing argument",)),
], ids=["missing-argument", "steps-abc", "unknown-option", "unknown-command", "option-without-value", "eval-one-arg"])
def test_usage_mistakes(sandbox, args, needles):
    sandbox.refused(*args, needles=needles)


def test_bare_command_prints_help_and_one_error_line(sandbox):
    result = sandbox.refused(needles=("no command given",))
    assert "run" in result.out and "export" in result.out  # the help lists the commands


# -- 7. limits: every numeric option has a range ------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (("run", "x", "--steps", "1000000000"), ("'--steps': 1000000000 is outside 1..1000",)),
    (("run", "x", "--steps", "99999999999999999999"), ("'--steps'", "outside 1..1000")),
    (("run", "x", "--seed", "-1"), ("'--seed': -1 is outside 0..4294967295",)),
    (("run", "x", "--seed", str(2**32)), ("'--seed'",)),
    (("run", "x", "--max-memory", "0"), ("--max-memory 0", "outside")),
    (("run", "x", "--max-memory", "5"), ("--max-memory 5",)),
    (("run", "x", "--max-memory", "lots"), ("--max-memory", "8GB")),
    (("run", "x", "--height", "100000"), ("'--height': 100000 is outside 32..8192",)),
    (("run", "x", "--width", "-32"), ("'--width'",)),
    (("eval", "a", "b", "--size", "0"), ("'--size'",)),
    (("eval", "a", "b", "--seed", "-1"), ("'--seed'",)),
    (("export", "--calib-size", "0"), ("'--calib-size'",)),
    (("export", "--calib-steps", "100000"), ("'--calib-steps'",)),
    (("export", "--calib-resolution", "99999999999999999999"), ("'--calib-resolution'",)),
    (("export", "--min-size", "0"), ("'--min-size'",)),
    (("init-tiny", "t", "--seed", "-5"), ("'--seed'",)),
    (("train-tiny", "t", "--threads", "0"), ("'--threads'",)),
    (("bench", "--repeats", "0"), ("'--repeats'",)),
    (("bench", "--sizes", "100"), ("--sizes 100", "multiple of 32")),
    (("serve", "--port", "70000"), ("'--port': 70000 is outside 0..65535",)),
    (("serve", "--max-pixels", "0"), ("'--max-pixels'",)),
    (("serve", "--shutdown-grace", "nan"), ("'--shutdown-grace'", "not a finite number")),
    (("batch", "prompts.txt", "-o", "out", "--steps", "0"), ("'--steps': 0 is outside 1..1000",)),
    (("batch", "prompts.txt", "-o", "out", "--workers", "0"), ("'--workers'",)),
])
def test_numeric_option_out_of_range(sandbox, args, needles):
    sandbox.refused(*args, needles=needles)


# -- 5. non-finite options --------------------------------------------------------------------

@pytest.mark.parametrize("command", [("run", "x"), ("eval", "a", "b")])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e400"])
def test_non_finite_guidance(sandbox, command, value):
    sandbox.refused(*command, "--guidance", value, needles=("'--guidance'", "not a finite number"))


def test_non_finite_smoothquant_alpha(sandbox):
    sandbox.refused("export", "--precision", "int8", "--smoothquant-alpha", "nan", needles=("not a finite number",))


# -- 8. run: inputs checked before the work ----------------------------------------------------

def test_prompt_that_is_not_utf8(sandbox, tiny_export):
    sandbox.refused("run", b"a \xff\xfe fox", "-m", tiny_export, *RUN, needles=("prompt is not valid UTF-8",),
                    watch=(tiny_export,))
    sandbox.refused("run", "a fox", "--negative-prompt", b"\xc3\x28", "-m", tiny_export, *RUN,
                    needles=("--negative-prompt is not valid UTF-8",))


def _latents_files(folder: Path, shape: tuple) -> dict[str, tuple[Path, tuple]]:
    """name -> (file, words the error must contain)"""
    good = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    files = {}

    def add(name, write, *needles):
        path = folder / name
        write(path)
        files[path.stem] = (path, needles)

    add("pickle.npy", lambda p: p.write_bytes(pickle.dumps({"latents": [1.0, 2.0]})), "not a .npy file")
    add("text.npy", lambda p: p.write_text("0.1 0.2 0.3\n"), "not a .npy file")
    add("empty.npy", lambda p: p.write_bytes(b""), "is empty")
    add("truncated.npy", lambda p: (np.save(p, good), p.write_bytes(p.read_bytes()[:150])), "not a readable numeric .npy")
    add("archive.npz", lambda p: np.savez(p, latents=good), ".npz archive")
    add("strings.npy", lambda p: np.save(p, np.full(shape, "1.0")), "not numbers")
    add("objects.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "not a readable")
    add("nan.npy", lambda p: np.save(p, np.where(good > 1, np.nan, good).astype(np.float32)), "not finite (NaN/Inf)")
    add("inf.npy", lambda p: np.save(p, np.where(good > 1, np.inf, good).astype(np.float32)), "not finite (NaN/Inf)")
    add("huge.npy", lambda p: np.save(p, np.full(shape, 1e30, np.float32)), "|x| = 1e+30")
    add("float64-overflow.npy", lambda p: np.save(p, np.full(shape, 1e300)), "not finite")
    add("wrong-shape.npy", lambda p: np.save(p, good[:, :, :1]), "shape", str(shape))
    return files


def test_latents_files_that_are_not_noise(sandbox, tiny_export, tmp_path):
    folder = tmp_path / "latents"
    folder.mkdir()
    for name, (path, needles) in _latents_files(folder, _latent_shape(tiny_export)).items():
        result = sandbox.cli("run", "a fox", "-m", tiny_export, "--latents", path, *RUN, "-o", "x.png")
        assert_one_line_error(result, *needles)
        assert not any(sandbox.work.iterdir()), name


@pytest.mark.parametrize("latents,needles", [
    ("missing.npy", ("does not exist",)), (".", ("is a folder",)),
])
def test_latents_path_missing_or_folder(sandbox, latents, needles):
    sandbox.refused("run", "a fox", "--latents", latents, *RUN, needles=needles)


@pytest.mark.parametrize("output,needles", [
    (".", ("must end in .png",)),
    ("folder.png", ("is a folder",)),
    ("afile/x.png", ("is a file, not a folder",)),
    ("/proc/sana-edge.png", ("system folder",)),
    ("/sys/x.png", ("system folder",)),
    ("missing/x.png", ("does not exist", "create it first")),
])
def test_run_output_refused_before_loading(sandbox, output, needles):
    (sandbox.work / "folder.png").mkdir()
    (sandbox.work / "afile").write_text("a file")
    # No model exists here: the output must be refused before anything is loaded.
    sandbox.refused("run", "a fox", "-m", "no-such-export", "-o", output, *RUN, needles=needles)


@pytest.mark.parametrize("content,needles", [(None, ("is a folder",)), (b"a \xff fox\n", ("not UTF-8",))])
def test_eval_prompt_file_that_is_not_text(sandbox, content, needles):
    prompts = sandbox.work / "prompts.txt"
    prompts.mkdir() if content is None else prompts.write_bytes(content)
    sandbox.refused("eval", "a", "b", "--prompts", "prompts.txt", needles=("prompts file", *needles))


def test_model_that_is_a_file(sandbox):
    sandbox.refused("run", "a fox", "-m", "/etc/passwd", *RUN, needles=("is a file, not an export folder",))


def test_run_prints_no_blank_line(sandbox, tiny_export):
    result = sandbox.cli("run", "a fox", "-m", tiny_export, *RUN, "-o", "fox.png")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith("saved fox.png"), repr(result.out[:80])
    assert result.err == ""


def test_dry_run_checks_and_writes_nothing(sandbox, tiny_export):
    result = sandbox.cli("run", "a fox", "-m", tiny_export, *RUN, "--dry-run", "-o", "fox.png")
    assert result.code == 0, result.err
    assert "inputs are valid" in result.out and "plan for" in result.out
    assert not any(sandbox.work.iterdir())
    sandbox.refused("run", "a fox", "-m", tiny_export, "--height", "100", "--dry-run", needles=("height 100",))


# -- 9. smaller defects ----------------------------------------------------------------------

def test_export_checks_arguments_before_importing_torch(sandbox):
    """The argument checks need no torch (it is blocked here), and take less time than importing it."""
    result = sandbox.refused("export", "no-such-checkpoint", "-o", "out", without_torch=True, needles=("does not exist",))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, diffusers"], check=True, capture_output=True)
    torch_import = time.perf_counter() - start
    real = sandbox.refused("export", "no-such-checkpoint", "-o", "out", needles=("does not exist",))
    assert real.seconds < torch_import, (real.seconds, torch_import, result.seconds)


def test_invalid_keep_fp_regex_before_calibration(sandbox, tiny_checkpoint):
    sandbox.refused("export", tiny_checkpoint, "-o", "out", "--precision", "int8", "--keep-fp", "attn(",
                    without_torch=True, needles=("--keep-fp 'attn('", "not a valid regular expression"))


def test_export_into_its_own_checkpoint(sandbox, tiny_checkpoint):
    for out in (tiny_checkpoint, tiny_checkpoint / "onnx", tiny_checkpoint.parent):
        sandbox.refused("export", tiny_checkpoint, "-o", out, "--force", needles=("overlaps the checkpoint",),
                        watch=(tiny_checkpoint,), without_torch=True)


def test_bench_results_default_under_the_cache_folder(tmp_path):
    """With the cache folder in /proc, the default --out (under it) is refused: it is not the checkout."""
    result = run_cli("bench", "--quick", cwd=tmp_path, cache=Path("/proc/sana-edge-cache"))
    assert_one_line_error(result, "--out '/proc/sana-edge-cache/bench'", "system folder")
    assert not any(tmp_path.iterdir())
