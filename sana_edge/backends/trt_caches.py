"""What the TensorRT backend keeps between processes, in the engine cache folder
($SANA_EDGE_CACHE/engines, beside the engines `sana-edge export` caches):

- TensorRT-RTX's runtime cache: the kernels it compiles just in time when an engine's context
  is created. Without it every process (and, when stages are released, every image) compiles
  them again. One file per TensorRT-RTX version and GPU model; the cache itself refuses a blob
  from another environment, which is then overwritten.
- Each engine's device memory (`device_memory_size_v2`) on this GPU model, which only a GPU can
  tell, so the memory planner knows a stage's full size before loading it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..default_model import sana_edge_home
from ..fileio import write_bytes_atomic, write_json_atomic

DEVICE_MEMORY_FILE = "device-memory.json"


def engine_cache_dir() -> Path:
    return sana_edge_home() / "engines"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def runtime_cache_path(flavor, gpu_name: str) -> Path:
    return engine_cache_dir() / f"runtime-{flavor.name}-{flavor.version}-{_slug(gpu_name)}.cache"


class RuntimeCacheFile:
    """One IRuntimeCache shared by every execution context of a backend, loaded from and saved to `path`."""

    def __init__(self, path: Path):
        self.path = path
        self.cache = None
        self.loaded = False  # the file existed and TensorRT accepted it
        self._saved_digest = None

    def attach(self, runtime_config) -> None:
        """Give `runtime_config` the shared cache (created, and read from the file, on first use)."""
        if not hasattr(runtime_config, "create_runtime_cache"):
            return  # full TensorRT: no just-in-time kernels to cache
        if self.cache is None:
            self.cache = runtime_config.create_runtime_cache()
            if self.path.is_file():
                blob = self.path.read_bytes()
                self.loaded = bool(self.cache.deserialize(blob))
                self._saved_digest = hashlib.sha256(blob).hexdigest() if self.loaded else None
        runtime_config.set_runtime_cache(self.cache)

    def save(self) -> bool:
        """Write the cache when it holds something the file does not; True when written."""
        if self.cache is None:
            return False
        blob = bytes(self.cache.serialize())
        digest = hashlib.sha256(blob).hexdigest()
        if not blob or digest == self._saved_digest:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, blob)
        self._saved_digest = digest
        return True


class DeviceMemoryRecord:
    """Engine sha256 + GPU model -> bytes of working memory its execution context reserves."""

    def __init__(self, path: Path | None = None):
        self.path = path or engine_cache_dir() / DEVICE_MEMORY_FILE

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, engine_sha256: str, gpu_name: str) -> int | None:
        value = self._read().get(f"{engine_sha256}@{gpu_name}")
        return None if value is None else int(value)

    def remember(self, engine_sha256: str, gpu_name: str, nbytes: int) -> None:
        data = self._read()
        if data.get(f"{engine_sha256}@{gpu_name}") == int(nbytes):
            return
        data[f"{engine_sha256}@{gpu_name}"] = int(nbytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, data)
