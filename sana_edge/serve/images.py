"""The store behind `response_format: url`: PNG files this server wrote, and nothing else.

A name is a random token plus an HMAC of it under the server's secret, so the server recognises
its own files without keeping a list (several Ray Serve replicas sharing one --output-dir
recognise each other's), a name cannot be guessed or forged, and a request's name is checked
against a strict pattern and its MAC before it is ever joined to the folder: no path traversal.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from ..fileio import write_bytes_atomic

_NAME = re.compile(r"^([0-9a-f]{32})-([0-9a-f]{32})\.png$")


class ImageStore:
    """PNG files for `url` responses, in `folder` (a fresh temporary folder, removed at close,
    when none is given; a given folder keeps its files)."""

    def __init__(self, folder: Path | None = None, secret: str | None = None):
        self._owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="sana-edge-serve-")) if folder is None else Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._secret = (secret or secrets.token_hex(32)).encode()

    def _mac(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()[:32]

    def write(self, png: bytes) -> str:
        token = secrets.token_hex(16)
        name = f"{token}-{self._mac(token)}.png"
        write_bytes_atomic(self.folder / name, png)  # whole or absent, even if the server stops now
        return name

    def path(self, name: str) -> Path | None:
        """The file for `name` if this server wrote it and it is still there, else None."""
        match = _NAME.match(name)
        if not match or not hmac.compare_digest(match[2], self._mac(match[1])):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)
