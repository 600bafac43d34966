"""Rendering one batch item, the same way in-process and in a Ray actor, and the export check
every node runs before it loads anything.

How nodes reach the export: every node reads it at the same path (a shared filesystem such as
NFS, or the same folder copied to that path on each machine). The driver sends the sha256 of its
manifest.json; each worker hashes the manifest it sees and refuses to start on a mismatch, and
`from_export(verify=True)` then checks every graph file against that manifest's sha256s, so a
node with a stale or different export fails loudly instead of making different images.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..errors import UserError
from ..image_io import png_bytes
from ..manifest import MANIFEST_NAME, sha256_file
from .index import sha256_bytes
from .items import BatchItem


def manifest_digest(export_dir: Path) -> str:
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"'{export_dir}' is not an export folder (no {MANIFEST_NAME}); "
                        "make one with `sana-edge export`")
    return sha256_file(path)


def check_export(export_dir: Path, expected_sha256: str, node: str) -> None:
    """Refuse to work on a node whose export differs from the driver's."""
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"node {node}: no export at '{export_dir}'; every node must read the export at the "
                        "same path (a shared filesystem, or the same folder copied there)")
    found = sha256_file(path)
    if found != expected_sha256:
        raise UserError(f"node {node}: the export at '{export_dir}' differs from the driver's (manifest sha256 "
                        f"{found[:12]} vs {expected_sha256[:12]}); copy the driver's export to that path")


class ItemRenderer:
    """One pipeline, loaded once, rendering items one after another."""

    def __init__(self, export_dir: Path, threads: int | None = None, verify: bool = True, node: dict | None = None):
        from ..pipeline import SanaEdgePipeline

        options = {"threads": threads} if threads else {}
        self.export_dir = Path(export_dir)
        self.pipe = SanaEdgePipeline.from_export(export_dir, verify=verify, keep_loaded=True, **options)
        self.node = node or {"host": socket.gethostname()}
        self.node = {**self.node, "pid": os.getpid(), "threads": threads}

    def render(self, item: BatchItem) -> tuple[dict, bytes | None]:
        """(index record, PNG bytes); a failing item gives an error record and no bytes."""
        record = {"key": item.key, "line": item.line, "prompt": item.prompt, "negative_prompt": item.negative_prompt,
                  "seed": item.seed, "steps": item.steps, "guidance_scale": item.guidance_scale,
                  "precision": self.pipe.manifest.precision, "node": self.node}
        start = time.perf_counter()
        try:
            result = self.pipe.generate(item.prompt, negative_prompt=item.negative_prompt, height=item.height,
                                        width=item.width, steps=item.steps, guidance_scale=item.guidance_scale,
                                        seed=item.seed)
            size = f"{result.image.width}x{result.image.height}"
            png = png_bytes(result.image, {
                "prompt": item.prompt, "negative_prompt": item.negative_prompt, "seed": item.seed, "steps": item.steps,
                "guidance": item.guidance_scale, "size": size, "precision": self.pipe.manifest.precision,
                "model": str(self.export_dir)})
        except Exception as exc:  # noqa: BLE001 (recorded; the other items go on)
            record.update(status="error", error=f"{type(exc).__name__}: {exc}",
                          timings={"total": time.perf_counter() - start})
            return record, None
        timings = {k: round(v, 4) for k, v in result.timings.items()}
        timings["total"] = round(time.perf_counter() - start, 4)
        record.update(status="ok", file=item.file, size=size, sha256=sha256_bytes(png), timings=timings)
        return record, png
