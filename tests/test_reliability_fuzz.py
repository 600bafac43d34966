"""Property-based fuzzing (hypothesis) of the CLI's numeric options and of export manifests:
every case ends in success or in one `error:` line with exit code 2, never a traceback
(issue 12). The entry point runs in process here (main(), the function the console script
calls), so each case costs milliseconds; derandomized, with CI-sized example counts."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sana_edge.cli import main

CI = settings(deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_success_or_one_line(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    if code != 0:
        assert code == 2, (code, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err


# -- numeric options -----------------------------------------------------------------------------

ODD_TEXT = ["", "abc", "1e3", "0x10", " 7", "+5", "-0", "1_000", "½", "nan", "inf", "-inf", "1e400", "0.5"]


def number_text(low: int, high: int):
    """(text given on the command line, the value it means or None when not a clean number)."""
    ints = st.one_of(st.integers(low, high), st.integers(-2**70, 2**70), st.sampled_from([low - 1, high + 1, 0, -1]))
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
    return st.one_of(
        ints.map(lambda v: (str(v), v)),
        # typer reads "3.0" as the int 3; how it reads "1e+20" as an int is its business: unclear.
        floats.map(lambda v: (repr(v), None if "e" in repr(v) else v)),
        st.sampled_from(ODD_TEXT).map(lambda t: (t, None)),
    )


def _valid_int(value, low, high, multiple=1) -> bool:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return isinstance(value, int) and low <= value <= high and value % multiple == 0


def _valid_float(value, low, high) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high


# option -> (strategy, is the meant value valid?)
RUN_OPTIONS = {
    "--steps": (number_text(1, 1000), lambda v: _valid_int(v, 1, 1000)),
    "--guidance": (number_text(0, 100), lambda v: _valid_float(v, 0, 100)),
    "--seed": (number_text(0, 2**32 - 1), lambda v: _valid_int(v, 0, 2**32 - 1)),
    "--height": (number_text(32, 8192), lambda v: _valid_int(v, 32, 8192, 32)),
    "--width": (number_text(32, 8192), lambda v: _valid_int(v, 32, 8192, 32)),
}
MEMORY_TEXT = ["8GB", "512MB", "0", "5", "1MB", "0.5KB", "-1GB", "1e30", "9999999999TB", "lots", "7.5 GiB", "", "1024TB"]


def _options(draw, table: dict) -> tuple[list[str], list[str]]:
    """argv for a random subset of `table`, and the flags given an invalid clean value."""
    argv, invalid, unclear = [], [], []
    for flag, (strategy, valid) in table.items():
        if draw(st.booleans()):
            text, value = draw(strategy)
            argv += [flag, text]
            if value is None:
                unclear.append(flag)
            elif not valid(value):
                invalid.append(flag)
    return argv, invalid, unclear


@settings(CI, max_examples=150)
@given(data=st.data())
def test_run_numeric_options(tiny_export, data):
    """`run --dry-run`: every check and the memory plan, no generation."""
    argv, invalid, unclear = _options(data.draw, RUN_OPTIONS)
    memory = data.draw(st.none() | st.sampled_from(MEMORY_TEXT))
    if memory is not None:
        argv += ["--max-memory", memory]
    if memory not in (None, "8GB", "7.5 GiB"):  # may be refused, or too small for the plan
        unclear.append("--max-memory")
    code, _, err = call(["run", "a fox", "-m", str(tiny_export), "--dry-run", *argv])
    assert_success_or_one_line(code, err)
    if invalid:
        assert code == 2 and any(flag.lstrip("-") in err for flag in invalid + unclear), (argv, err)
    elif not unclear:
        assert code == 0, (argv, err)


EXPORT_OPTIONS = {
    "--calib-size": (number_text(1, 1000), lambda v: _valid_int(v, 1, 1000)),
    "--calib-steps": (number_text(1, 100), lambda v: _valid_int(v, 1, 100)),
    "--calib-seed": (number_text(0, 2**32 - 1), lambda v: _valid_int(v, 0, 2**32 - 1)),
    "--calib-resolution": (number_text(32, 4096), lambda v: _valid_int(v, 32, 4096, 32)),
    "--smoothquant-alpha": (number_text(0, 1), lambda v: _valid_float(v, 0, 1)),
    "--block-size": (st.sampled_from([16, 32, 64, 128, 256, 0, 100, -16, 2**40]).map(lambda v: (str(v), v)),
                     lambda v: v in (16, 32, 64, 128, 256)),
    "--text-encoder-bits": (st.sampled_from([4, 8, 0, 2, 16, -8]).map(lambda v: (str(v), v)), lambda v: v in (4, 8)),
    "--min-size": (number_text(32, 512), lambda v: _valid_int(v, 32, 8192)),
    "--decoder-tile": (number_text(32, 8192), lambda v: _valid_int(v, 32, 8192)),
}


@settings(CI, max_examples=150)
@given(data=st.data())
def test_export_numeric_options(tiny_checkpoint, data):
    """Valid options get as far as the output folder (not empty here: the sentinel refusal)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        argv, invalid, unclear = _options(data.draw, EXPORT_OPTIONS)
        code, _, err = call(["export", str(tiny_checkpoint), "-o", str(out), "--precision", "int8", *argv])
        assert_success_or_one_line(code, err)
        assert code == 2 and [p.name for p in out.iterdir()] == ["keep.txt"]
        if invalid:
            assert any(flag.lstrip("-") in err for flag in invalid + unclear), (argv, err)
        elif not unclear:
            assert "is not empty" in err, (argv, err)


EVAL_OPTIONS = {
    "--size": (number_text(32, 8192), lambda v: _valid_int(v, 32, 8192)),
    "--steps": RUN_OPTIONS["--steps"],
    "--guidance": RUN_OPTIONS["--guidance"],
    "--seed": RUN_OPTIONS["--seed"],
}


@settings(CI, max_examples=80)
@given(data=st.data())
def test_eval_numeric_options(tiny_export, data):
    """Valid options get as far as the --json check (a folder here: the sentinel refusal)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "result.json"
        folder.mkdir()
        argv, invalid, unclear = _options(data.draw, EVAL_OPTIONS)
        code, _, err = call(["eval", str(tiny_export), str(tiny_export), "--json", str(folder), *argv])
        assert_success_or_one_line(code, err)
        assert code == 2
        if invalid:
            assert any(flag.lstrip("-") in err for flag in invalid + unclear), (argv, err)
        elif not unclear:
            assert "is a folder" in err, (argv, err)


# -- manifests -----------------------------------------------------------------------------------

NASTY_PATHS = ["/etc/passwd", "../manifest.json", "tokenizer/../../outside.json", "", ".", "..", "a\0b",
               "C:\\Windows\\win.ini", "\\\\server\\share", "leaves.onnx", "loop.onnx", "manifest.json", "tokenizer",
               "transformer_step.onnx", "vae_decoder.onnx", "tokenizer/tokenizer.json", "scheduler/scheduler_config.json",
               "x" * 1100, "~/.ssh/id_rsa", "tokenizer//tokenizer.json", "./transformer_step.onnx"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12),
                    st.sampled_from(NASTY_PATHS))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=6)


def _node_paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _node_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _node_paths(value, (*prefix, index))


def _resolve(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _mutate(draw, manifest: dict, paths: list):
    """One random change: delete a key, replace a value (any JSON, or a hostile path), wrap it in
    a list, nudge a number, add a `files` entry, or replace the whole manifest."""
    kind = draw(st.sampled_from(["path", "replace", "number", "delete", "wrap", "add-file", "whole"]))
    if kind == "whole":
        return draw(JSON_VALUES)
    path = draw(st.sampled_from(paths))
    try:
        parent, key = _resolve(manifest, path[:-1]), path[-1]
        value = parent[key]
    except (KeyError, IndexError, TypeError):
        return manifest  # an earlier change removed it
    if kind == "delete":
        del parent[key]
    elif kind == "replace":
        parent[key] = draw(JSON_VALUES)
    elif kind == "path":
        parent[key] = draw(st.sampled_from(NASTY_PATHS))
    elif kind == "wrap":
        parent[key] = [value]
    elif kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = draw(st.sampled_from([0, -value, value * 2, value + 1, value - 1, value * 1e6, float("nan"), 10**9]))
    elif kind == "add-file" and isinstance(manifest.get("files"), dict):
        manifest["files"][draw(st.sampled_from(NASTY_PATHS))] = draw(st.sampled_from(["0" * 64, "f" * 64, "bad"]))
    return manifest


RECORDS = {"validation", "inputs", "outputs", "dynamic_axes", "tool_versions", "linear_attention_eps_constants"}


@pytest.fixture(scope="module")
def fuzz_export(tiny_export, tmp_path_factory):
    """A copy of the tiny export with a symlink leaving it and a symlink loop inside it."""
    root = tmp_path_factory.mktemp("fuzz")
    export = root / "export"
    shutil.copytree(tiny_export, export)
    shutil.copy(export / "transformer_step.onnx", root / "outside.onnx")
    (export / "leaves.onnx").symlink_to(root / "outside.onnx")
    (export / "loop.onnx").symlink_to("loop.onnx")
    return export


@settings(CI, max_examples=100)
@given(data=st.data())
def test_manifest_mutations(fuzz_export, data):
    """1-3 random changes to a valid manifest; `run` ends with a whole PNG or one line and none."""
    original = json.loads((fuzz_export / "manifest.json").read_text())
    manifest = json.loads(json.dumps(original))
    # Deepest first: hypothesis draws early list items more often, and the deep values (a
    # component's file, a model value) are where the runtime reads what the manifest says.
    # Inside the records the runtime never reads (validation results, tensor declarations, tool
    # versions) a change can only succeed: they are left out to spend the examples elsewhere.
    paths = sorted((p for p in _node_paths(original) if p and not RECORDS.intersection(p[:-1])), key=len, reverse=True)
    for _ in range(data.draw(st.integers(1, 3))):
        manifest = _mutate(data.draw, manifest, paths)
    no_verify = data.draw(st.booleans())
    output = fuzz_export.parent / "fuzz.png"
    try:
        (fuzz_export / "manifest.json").write_text(json.dumps(manifest, allow_nan=True))
        code, _, err = call(["run", "a fox", "-m", str(fuzz_export), "--steps", "1", "--height", "32", "--width", "32",
                             "--seed", "0", "-o", str(output), *(["--no-verify"] if no_verify else [])])
        assert_success_or_one_line(code, err)
        # Outcome classes, shown by --hypothesis-show-statistics (paths dropped so equal errors group).
        event("success" if code == 0 else " ".join(w for w in err.split()[1:6] if "/" not in w))
        if code == 0:
            from PIL import Image

            with Image.open(output) as image:
                image.load()
                assert image.size == (32, 32)
        else:
            assert not output.exists()
        leftovers = [p.name for p in fuzz_export.parent.iterdir() if p.name not in ("export", "outside.onnx", "fuzz.png")]
        assert not leftovers, leftovers
    finally:
        output.unlink(missing_ok=True)
        (fuzz_export / "manifest.json").write_text(json.dumps(original))
