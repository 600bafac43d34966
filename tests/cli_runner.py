"""Running the real `sana-edge` entry point in a subprocess, and what every failure must look like:
exit code 2, exactly one stderr line starting with `error:`, no traceback, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The console script's own code path (sana_edge.cli:entry_point), under this interpreter.
ENTRY = "import sys; from sana_edge.cli import entry_point; sys.argv[0] = 'sana-edge'; entry_point()"
# The same, with torch and the build-side libraries unimportable: an error that still comes out
# right was found before the (seconds-long) torch import.
ENTRY_WITHOUT_TORCH = (
    "import sys\n"
    "for name in ('torch', 'diffusers', 'transformers', 'onnx', 'onnxscript'):\n"
    "    sys.modules[name] = None\n" + ENTRY
)


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float


def cli_env(cache: Path) -> dict:
    env = dict(os.environ, SANA_EDGE_CACHE=str(cache), OMP_NUM_THREADS="1")
    for name in ("SANA_EDGE_TRACEBACK", "PYTHONWARNINGS"):
        env.pop(name, None)
    return env


def run_cli(*args, cwd: Path, cache: Path, without_torch: bool = False, stdin: bytes | None = None,
            timeout: float = 300) -> Result:
    command = [sys.executable, "-c", ENTRY_WITHOUT_TORCH if without_torch else ENTRY, *map(os.fsdecode, args)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=cli_env(cache), capture_output=True, timeout=timeout, input=stdin)
    return Result(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"),
                  time.perf_counter() - start)


def start_cli(*args, cwd: Path, cache: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", ENTRY, *map(os.fsdecode, args)]
    # SIGINT back to its default: a shell without job control starts background jobs (and so this
    # suite, when run with `&`) with SIGINT ignored, which children inherit and Python honours.
    return subprocess.Popen(command, cwd=cwd, env=cli_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def tree(root: Path) -> dict[str, tuple]:
    """Every path under `root` (hidden ones too) with its size and mtime: what a failed command
    must leave exactly as it was."""
    listing = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            stat = path.lstat()
            listing[str(path.relative_to(root))] = (stat.st_size if not path.is_dir() else 0, stat.st_mtime_ns)
    return listing


def wait_for(predicate, process: subprocess.Popen, timeout: float = 240, what: str = "the condition") -> None:
    """Poll until `predicate()` holds; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the command ended ({process.returncode}) before {what}: "
                                 f"{process.stderr.read().decode(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def has_loaded(pid: int, library: str) -> bool:
    """True once process `pid` has mapped a shared library whose path contains `library` (Linux)."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def interrupt(process: subprocess.Popen, signum: int, timeout: float = 120) -> Result:
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the command did not stop within {timeout}s of {signal.Signals(signum).name}") from None
    return Result(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"), 0.0)


class Sandbox:
    """A working folder and a sana-edge cache folder for one test; `refused(...)` runs a command
    that must fail with one line and leave the working folder (and `watch`ed folders) untouched."""

    def __init__(self, root: Path):
        self.work = root / "work"
        self.cache = root / "cache"
        self.work.mkdir()

    def cli(self, *args, **options) -> Result:
        return run_cli(*args, cwd=self.work, cache=self.cache, **options)

    def refused(self, *args, needles: tuple = (), watch: tuple = (), without_torch: bool = False) -> Result:
        watched = (self.work, *map(Path, watch))
        before = [tree(path) for path in watched]
        result = self.cli(*args, without_torch=without_torch)
        assert_one_line_error(result, *needles)
        for path, listing in zip(watched, before):
            assert tree(path) == listing, f"{path} changed"
        registry = self.cache / "staging"
        assert not registry.exists() or not any(registry.iterdir()), "a staging folder is still registered"
        return result
