"""Files the user names on the command line, checked before any work: output paths that must be
writable, and `.npy` noise files that must be plain arrays (never pickles)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError

SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
# Largest latents file worth reading: (1, 32, 256, 256) float64 is 16 MiB (8192 px); anything far
# bigger is not a noise tensor.
_MAX_LATENTS_BYTES = 64 << 20


def in_system_folder(path: Path) -> bool:
    resolved = str(Path(path).resolve())
    return any(resolved == root or resolved.startswith(root + "/") for root in SYSTEM_FOLDERS)


def check_output_file(path: Path, suffix: str, flag: str) -> None:
    """An output file we will write atomically (a temp sibling, then rename): its folder must
    exist, be writable and be a normal folder; the path itself must not be a folder."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise UserError(f"{flag} '{path}' must end in {suffix}")
    if path.is_dir():
        raise UserError(f"{flag} '{path}' is a folder; pass a file path such as {path / ('output' + suffix)}")
    if in_system_folder(path):
        raise UserError(f"{flag} '{path}' is inside a system folder ({', '.join(SYSTEM_FOLDERS)}); choose a normal folder")
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists() and not ancestor.is_dir():
            raise UserError(f"{flag} '{path}': '{ancestor}' is a file, not a folder; choose another path")
    if not parent.is_dir():
        raise UserError(f"folder '{parent}' for {flag} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to folder '{parent}' (permission denied); choose another {flag}")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} '{path}' exists and is not a regular file; choose another path")


def check_output_folder(path: Path, flag: str) -> None:
    """A folder a command will create (or add files to): not a file, not under a file, not a
    system folder, and its nearest existing ancestor writable."""
    path = Path(path)
    if in_system_folder(path):
        raise UserError(f"{flag} '{path}' is inside a system folder ({', '.join(SYSTEM_FOLDERS)}); choose a normal folder")
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise UserError(f"{flag} '{path}': '{candidate}' is a file, not a folder; choose another path")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise UserError(f"cannot write to folder '{candidate}' (permission denied); choose another {flag}")
            return


def load_latents_file(path: Path, flag: str = "--latents") -> np.ndarray:
    """A .npy file holding one numeric array; pickles, archives and text are refused by content."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} file '{path}' does not exist")
    if path.is_dir():
        raise UserError(f"{flag} '{path}' is a folder; pass a .npy file saved with numpy.save")
    if not path.is_file():
        raise UserError(f"{flag} '{path}' is not a regular file; pass a .npy file saved with numpy.save")
    size = path.stat().st_size
    if size > _MAX_LATENTS_BYTES:
        raise UserError(f"{flag} '{path}' is {size >> 20} MiB, far larger than initial noise; pass the noise .npy file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
            if head.startswith(_ZIP_MAGIC):
                raise UserError(f"{flag} '{path}' is an .npz archive; save the one array with numpy.save (.npy)")
            if head != _NPY_MAGIC:
                what = "empty" if not head else "not a .npy file (a pickle or text?)"
                raise UserError(f"{flag} '{path}' is {what}; pass an array saved with numpy.save")
            handle.seek(0)
            array = np.load(handle, allow_pickle=False)
    except UserError:
        raise
    except (ValueError, EOFError, OSError) as exc:  # truncated, object dtype (pickle inside), bad header
        reason = " ".join(str(exc).split())[:120]
        raise UserError(f"{flag} '{path}' is not a readable numeric .npy file ({reason}); save it again with numpy.save") from None
    if array.dtype.kind not in "fiu":
        raise UserError(f"{flag} '{path}' holds {array.dtype} values, not numbers; pass float32 noise")
    return array
