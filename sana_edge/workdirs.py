"""Hidden work folders (the staging folders of exports and training) and the runs that own them.

A work folder is named `.sana-edge-staging-<label>-<pid>-<random>` beside its output, so its
owner is known from the name alone, and is registered under `<sana-edge home>/staging/` with the
owner's start time (a recycled pid is not mistaken for the owner). A run killed with SIGKILL
cannot clean up; its folder is then removed by the next run that works in the same folder, by
any later export/training run wherever it writes (the registry), and by `sana-edge doctor`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from .default_model import sana_edge_home
from .fileio import DIR_MODE

STAGING_PREFIX = ".sana-edge-staging-"
_SIGNALS = tuple(s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))


def registry_dir() -> Path:
    return sana_edge_home() / "staging"


def _start_time(pid: int) -> float | None:
    """When process `pid` started, or None when there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # e.g. access denied: it exists
        return -1.0


def owner_pid(folder: Path) -> int | None:
    """The pid in a work folder's name (`...-<pid>-<random>`)."""
    if not folder.name.startswith(STAGING_PREFIX):
        return None
    parts = folder.name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _owner_gone(pid: int | None, started: float | None = None) -> bool:
    if pid is None:
        return False  # not named by us: never touch it
    now = _start_time(pid)
    if now is None:
        return True
    return started is not None and now >= 0 and abs(now - started) > 1.0  # the pid was recycled


def _entry(folder: Path) -> Path:
    return registry_dir() / (hashlib.sha256(str(folder).encode()).hexdigest()[:24] + ".json")


def make_work_dir(parent: Path, label: str) -> Path:
    """A fresh, registered work folder in `parent` (which must exist)."""
    pid = os.getpid()
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{label}-{pid}-", dir=parent))
    os.chmod(folder, DIR_MODE)  # it becomes the output folder: the mode any new folder gets
    with contextlib.suppress(OSError):  # the registry is best effort: a read-only home must not stop a run
        registry_dir().mkdir(parents=True, exist_ok=True)
        _entry(folder).write_text(json.dumps({"path": str(folder), "pid": pid, "started": _start_time(pid)}))
    return folder


def remove_work_dir(folder: Path) -> None:
    """Delete a work folder and its registry entry."""
    shutil.rmtree(folder, ignore_errors=True)
    forget(folder)


def forget(folder: Path) -> None:
    """Drop the registry entry of a work folder that was renamed into place."""
    with contextlib.suppress(OSError):
        _entry(folder).unlink(missing_ok=True)


def remove_stale_beside(parent: Path) -> list[Path]:
    """Delete the work folders in `parent` whose owner process is gone; returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for folder in parent.glob(f"{STAGING_PREFIX}*"):
            if folder.is_dir() and _owner_gone(owner_pid(folder)):
                remove_work_dir(folder)
                removed.append(folder)
    return removed


def remove_stale_registered() -> list[Path]:
    """Delete every registered work folder, wherever it is, whose owner process is gone."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in registry_dir().glob("*.json"):
            try:
                record = json.loads(entry.read_text())
                folder, pid = Path(record["path"]), int(record["pid"])
                started = record.get("started")
            except (OSError, ValueError, KeyError, TypeError):
                entry.unlink(missing_ok=True)  # unreadable: a torn write of a killed run
                continue
            if not _owner_gone(pid, started):
                continue
            if folder.is_dir() and owner_pid(folder) == pid:  # only a folder named by that run
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            entry.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends, so a second Ctrl-C cannot cut a cleanup or
    a rename in half; the held signal is delivered (and raised) right after."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:
        yield
        return
    signals = {getattr(signal, name) for name in _SIGNALS}
    previous = block(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        block(signal.SIG_SETMASK, previous)
