"""Output folders that appear whole or not at all.

Everything is written into a hidden staging folder next to OUT (unique per process, so two
exports to one -o never share it) and renamed into place only when complete. A failed,
interrupted (SIGINT/SIGTERM) or killed run leaves no OUT; stale staging folders of killed runs
(SIGKILL leaves them) are recognised by their owner pid and removed by the next export or
training run, wherever it writes, and by `sana-edge doctor` (sana_edge.workdirs).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

from sana_edge.errors import UserError
from sana_edge.inputs import in_system_folder
from sana_edge.workdirs import (STAGING_PREFIX, forget, make_work_dir, owner_pid, remove_stale_beside,
                                remove_stale_registered, remove_work_dir, signals_deferred)

__all__ = ["STAGING_PREFIX", "check_out_dir", "staging_dir"]


def check_out_dir(out_dir: Path, force: bool, source: Path | None = None, source_name: str = "checkpoint") -> None:
    """Refuse outputs that cannot or must not be written (or would replace `source`), before any work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output '{out_dir}' is a file; choose a folder path for -o")
    for ancestor in out_dir.parents:
        if ancestor.exists() and not ancestor.is_dir():
            raise UserError(f"output '{out_dir}': '{ancestor}' is a file, not a folder; choose another -o")
    resolved = out_dir.resolve()
    if source is not None:
        source = Path(source).resolve()
        if resolved == source or source.is_relative_to(resolved) or resolved.is_relative_to(source):
            raise UserError(f"output '{out_dir}' overlaps the {source_name} '{source}'; choose an -o outside the {source_name}")
    if in_system_folder(resolved):
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


def _warn_removed(removed: list[Path]) -> None:
    for folder in removed:
        warnings.warn(f"removed {folder}, the staging folder of a run that was killed (pid {owner_pid(folder)})",
                      stacklevel=3)


@contextlib.contextmanager
def staging_dir(out_dir: Path):
    """Yield a fresh staging folder beside `out_dir`; on success it replaces `out_dir`, on any
    failure or interruption it is removed."""
    out_dir = Path(out_dir).resolve()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create '{out_dir.parent}' ({exc.strerror}); choose another -o") from None
    _warn_removed(remove_stale_beside(out_dir.parent) + remove_stale_registered())
    stage = make_work_dir(out_dir.parent, out_dir.name)
    try:
        yield stage
        with signals_deferred():  # a Ctrl-C now would leave OUT moved aside and not replaced
            _replace(stage, out_dir)
    except BaseException:
        with signals_deferred():
            remove_work_dir(stage)
        raise


def _replace(stage: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = make_work_dir(out_dir.parent, f"{out_dir.name}-old")
        out_dir.rename(old / "replaced")
    try:
        stage.rename(out_dir)
    except OSError:  # another run renamed its own complete output into place first
        if old is not None:
            if not out_dir.exists():  # nobody did: put the previous output back
                (old / "replaced").rename(out_dir)
            remove_work_dir(old)
        raise UserError(f"another run wrote '{out_dir}' at the same time; its complete output is kept, "
                        "re-run to replace it") from None
    forget(stage)
    if old is not None:
        remove_work_dir(old)
