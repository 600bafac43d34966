"""Output folders that appear whole or not at all.

Everything is written into a hidden staging folder next to OUT (unique per process, so two
exports to one -o never share it) and renamed into place only when complete. A failed,
interrupted (SIGINT/SIGTERM) or killed run leaves no OUT; stale staging folders of killed runs
(SIGKILL leaves them) are recognised by their owner pid and removed by the next run beside them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from sana_edge.errors import UserError

STAGING_PREFIX = ".sana-edge-staging-"
_PID_FILE = ".owner-pid"


def check_out_dir(out_dir: Path, force: bool, source: Path | None = None) -> None:
    """Refuse outputs that cannot or must not be written, before any work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output '{out_dir}' is a file; choose a folder path for -o")
    resolved = out_dir.resolve()
    if source is not None:
        source = Path(source).resolve()
        if resolved == source or source.is_relative_to(resolved) or resolved.is_relative_to(source):
            raise UserError(f"output '{out_dir}' overlaps the checkpoint '{source}'; choose an -o outside the checkpoint")
    if resolved.parts[:2] in (("/", "proc"), ("/", "sys"), ("/", "dev")):
        raise UserError(f"output '{out_dir}' is inside a system folder; choose a normal folder for -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UserError(f"output folder '{out_dir}' is not empty; pass --force to replace it or choose another -o")
    parent = _existing_parent(resolved)
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write to '{parent}' (permission denied); choose another -o")


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path if path.is_dir() else path.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete staging folders in `folder` whose owner process is gone; returns what was removed."""
    removed = []
    for stage in folder.glob(f"{STAGING_PREFIX}*"):
        try:
            pid = int((stage / _PID_FILE).read_text())
        except (OSError, ValueError):
            pid = None
        if pid is None or not _alive(pid):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    return removed


@contextlib.contextmanager
def staging_dir(out_dir: Path):
    """Yield a fresh staging folder beside `out_dir`; on success it replaces `out_dir`, on any
    failure or interruption it is removed."""
    out_dir = Path(out_dir).resolve()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create '{out_dir.parent}' ({exc.strerror}); choose another -o") from None
    remove_stale_staging(out_dir.parent)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{out_dir.name}-", dir=out_dir.parent))
    (stage / _PID_FILE).write_text(str(os.getpid()))
    try:
        yield stage
        (stage / _PID_FILE).unlink()
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{out_dir.name}-old-", dir=out_dir.parent))
            (old / _PID_FILE).write_text(str(os.getpid()))
            out_dir.rename(old / "replaced")
        try:
            stage.rename(out_dir)
        except OSError:  # another run renamed its own complete output into place first
            raise UserError(f"another run wrote '{out_dir}' at the same time; its complete output is kept, "
                            "re-run to replace it") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
