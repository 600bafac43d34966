"""Interrupted commands exit 130 (SIGINT) or 143 (SIGTERM) and leave nothing; a SIGKILLed
export's staging folder is found and removed later; concurrent writers leave a complete output
or none (issue 12, items 2, 3 and 6). Real signals to the real CLI in a subprocess."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_runner import has_loaded, interrupt, start_cli, wait_for

STAGING = ".sana-edge-staging-"
EXIT = {signal.SIGINT: (130, "error: interrupted; nothing was written"),
        signal.SIGTERM: (143, "error: terminated (SIGTERM); nothing was written")}


def _staging_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(STAGING)]


def _writing(folder: Path) -> bool:
    """An export has loaded the checkpoint and started writing into its staging folder."""
    return any((stage / "tokenizer").is_dir() for stage in _staging_folders(folder))


def _assert_interrupted(result, signum) -> None:
    code, line = EXIT[signum]
    assert result.code == code, result.err
    assert result.err.splitlines() == [line], result.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_export_leaves_nothing(sandbox, tiny_checkpoint, signum):
    process = start_cli("export", tiny_checkpoint, "-o", "out", cwd=sandbox.work, cache=sandbox.cache)
    wait_for(lambda: _writing(sandbox.work), process, what="the export to start writing")
    result = interrupt(process, signum)
    _assert_interrupted(result, signum)  # also: no progress bar or library advice on stderr before it
    assert list(sandbox.work.iterdir()) == []
    assert list((sandbox.cache / "staging").iterdir()) == []


@pytest.mark.parametrize("delay", [0.0, 1.0], ids=["while-importing-onnxruntime", "while-working"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_nothing(sandbox, tiny_export, signum, delay):
    # 1000 steps at 512 px: several seconds even on a fast CPU (64 px took 0.5 s, ending before the signal)
    process = start_cli("run", "a fox", "-m", tiny_export, "--steps", "1000", "--height", "512", "--width", "512",
                        "-o", "fox.png", cwd=sandbox.work, cache=sandbox.cache)
    wait_for(lambda: has_loaded(process.pid, "onnxruntime_pybind11_state"), process, what="onnxruntime to load")
    # At 0 s the signal lands while onnxruntime's extension initialises (it then surfaces as an
    # ImportError); at 1 s usually while denoising. Every moment must end the same way.
    time.sleep(delay)
    result = interrupt(process, signum)
    _assert_interrupted(result, signum)
    assert list(sandbox.work.iterdir()) == []


def test_killed_export_staging_is_found_and_removed(sandbox, tiny_checkpoint):
    """SIGKILL cannot be cleaned up after; the staging folder is registered, and the next
    `sana-edge doctor` (or export, wherever it writes) removes it."""
    process = start_cli("export", tiny_checkpoint, "-o", "out", cwd=sandbox.work, cache=sandbox.cache)
    wait_for(lambda: _writing(sandbox.work), process, what="the export to start writing")
    process.kill()
    process.communicate(timeout=60)
    [stale] = _staging_folders(sandbox.work)
    doctor = sandbox.cli("doctor")
    assert doctor.code == 0, doctor.err
    assert f"staging folders of killed runs: removed 1: {stale}" in doctor.out
    assert not stale.exists() and list(sandbox.work.iterdir()) == []
    assert "staging folders of killed runs: none" in sandbox.cli("doctor").out


def test_stale_staging_removed_by_the_next_export_anywhere(tmp_path, monkeypatch):
    """In process: a dead run's folders, beside OUT and elsewhere (registered), go at the next staging."""
    from sana_edge.export.staging import staging_dir
    from sana_edge.workdirs import make_work_dir

    monkeypatch.setenv("SANA_EDGE_CACHE", str(tmp_path / "cache"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir()
    here.mkdir()
    with monkeypatch.context() as as_dead_run:
        as_dead_run.setattr("os.getpid", lambda: dead.pid)
        stale = [make_work_dir(elsewhere, "old-export"), make_work_dir(here, "out")]
    (stale[0] / "transformer.onnx").write_bytes(b"half written")
    alive = make_work_dir(elsewhere, "running")  # ours: this process is alive, so it stays
    with warnings.catch_warnings(record=True) as caught, staging_dir(here / "out") as stage:
        warnings.simplefilter("always")
        (stage / "done.txt").write_text("ok")
    assert not any(path.exists() for path in stale)
    assert alive.exists()
    assert (here / "out" / "done.txt").read_text() == "ok"
    assert sum("killed" in str(w.message) for w in caught) == 2


def test_parallel_png_writers_leave_one_whole_image(sandbox, tiny_export):
    """Four runs write one path at once: each succeeds, and the file is one of their images, whole."""
    from PIL import Image

    seeds = [1, 2, 3, 4]
    processes = [start_cli("run", "a fox", "-m", tiny_export, "--steps", "1", "--height", "64", "--width", "64",
                           "--seed", str(seed), "-o", "same.png", cwd=sandbox.work, cache=sandbox.cache)
                 for seed in seeds]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    assert [p.name for p in sandbox.work.iterdir()] == ["same.png"]  # no temp file left
    with Image.open(sandbox.work / "same.png") as image:
        image.load()  # a truncated or interleaved PNG fails here
        assert int(image.text["sana-edge:seed"]) in seeds


def test_save_png_under_racing_writers_and_a_reader(tmp_path):
    """In process, many times: every read of the path sees a complete PNG equal to one written."""
    from PIL import Image

    from sana_edge.image_io import save_png

    path = tmp_path / "race.png"
    images = [Image.fromarray(np.full((48, 48, 3), 40 * i, np.uint8)) for i in range(4)]
    pixels = {np.asarray(image).tobytes() for image in images}
    save_png(images[0], path)
    stop, seen, failures = threading.Event(), [], []

    def write(image):
        for _ in range(30):
            save_png(image, path, {"writer": id(image)})

    def read():
        while not stop.is_set():
            try:
                with Image.open(path) as image:
                    seen.append(np.asarray(image.convert("RGB")).tobytes())
            except Exception as exc:  # any partial file shows up here
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(image,)) for image in images]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert not failures, failures[:3]
    assert seen and set(seen) <= pixels
    assert [p.name for p in tmp_path.iterdir()] == ["race.png"]
    assert (path.stat().st_mode & 0o777) != 0o600  # the temp file's private mode is not kept


STAGED_WRITER = """
import sys, time
from pathlib import Path
from sana_edge.errors import UserError
from sana_edge.export.staging import staging_dir
writer, out = sys.argv[1], Path(sys.argv[2])
try:
    with staging_dir(out) as stage:
        for part in range(20):
            (stage / f"part{part}.txt").write_text(writer)
            time.sleep(0.01)
except UserError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def test_concurrent_staged_writers_to_one_folder(tmp_path):
    """Four processes stage into one output folder at once (what exports and init-tiny do): each
    ends whole or with one line, and the folder holds all of one writer's files, nothing else."""
    import sys

    processes = [subprocess.Popen([sys.executable, "-c", STAGED_WRITER, str(i), str(tmp_path / "same")],
                                  stderr=subprocess.PIPE) for i in range(4)]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0 or (process.returncode == 2 and err.decode().startswith("error: another run wrote")
                                           and err.count(b"\n") == 1), err.decode()
    assert [p.name for p in tmp_path.iterdir()] == ["same"]
    contents = {(tmp_path / "same" / f"part{part}.txt").read_text() for part in range(20)}
    assert len(contents) == 1 and len(list((tmp_path / "same").iterdir())) == 20


@pytest.mark.slow
def test_concurrent_exports_to_one_folder(sandbox, tiny_checkpoint):
    processes = [start_cli("export", tiny_checkpoint, "-o", "same", cwd=sandbox.work, cache=sandbox.cache)
                 for _ in range(2)]
    results = [(process.wait(timeout=900), process.stderr.read().decode()) for process in processes]
    for code, err in results:
        assert code == 0 or (code == 2 and err.startswith("error: another run wrote")), err
    from sana_edge.manifest import load_manifest

    load_manifest(sandbox.work / "same")  # complete: every file there and matching its sha256
    assert [p.name for p in sandbox.work.iterdir()] == ["same"]
