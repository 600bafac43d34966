"""`sana-edge batch`: the driver. It reads the index, skips items already made (verified), hands
the rest to a source of results (in-process, or Ray Data: ray_runner.py), and writes each PNG
and its index record as results arrive, with a progress bar and ETA.

Only the driver writes to OUTDIR: workers return PNG bytes, so the output folder needs to exist
on the driver's machine only, and a stopped run leaves whole files and a valid index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..fileio import write_bytes_atomic
from .index import IndexWriter, compact_index, is_done, load_index
from .items import BatchItem
from .worker import ItemRenderer

Results = Callable[[list[BatchItem]], Iterable[tuple[dict, bytes | None]]]


@dataclass(frozen=True)
class Summary:
    total: int
    skipped: int  # already made by an earlier run (file verified)
    made: int
    failed: int
    seconds: float
    nodes: tuple[str, ...]  # the nodes that made this run's images

    def describe(self) -> str:
        rate = self.made / self.seconds if self.seconds > 0 and self.made else 0.0
        return (f"{self.made} made, {self.skipped} already done, {self.failed} failed of {self.total} "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s) on {len(self.nodes)} node(s)")


def pending(items: list[BatchItem], outdir: Path) -> tuple[list[BatchItem], int]:
    """Items still to make and how many are done; compacts the index (one record per key)."""
    records = load_index(outdir)
    done = {item.key for item in items if is_done(records.get(item.key), outdir)}
    if records:
        compact_index(outdir, records)
    return [item for item in items if item.key not in done], len(done)


def local_results(export_dir: Path, threads: int | None, verify: bool) -> Results:
    """In-process: one pipeline, items one after another."""

    def results(todo: list[BatchItem]) -> Iterator[tuple[dict, bytes | None]]:
        if not todo:
            return
        renderer = ItemRenderer(export_dir, threads=threads, verify=verify)
        for item in todo:
            yield renderer.render(item)

    return results


def _progress(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[failed]} failed"),
                    console=console)


def run_batch(items: list[BatchItem], outdir: Path, results: Results, console) -> Summary:
    outdir.mkdir(parents=True, exist_ok=True)
    todo, skipped = pending(items, outdir)
    made = failed = 0
    nodes: set[str] = set()
    start = time.perf_counter()
    with _progress(console) as progress, IndexWriter(outdir) as index:
        task = progress.add_task("batch", total=len(items), completed=skipped, failed=0)
        for record, png in results(todo):
            if png is not None:
                write_bytes_atomic(outdir / record["file"], png)  # the image first, then its record
                made += 1
                nodes.add(str(record["node"].get("node_id") or record["node"].get("host")))
            else:
                failed += 1
            index.append(record)
            progress.update(task, advance=1, failed=failed)
    if made or failed:
        compact_index(outdir, load_index(outdir))  # one line per item: a redone item replaces its old record
    return Summary(len(items), skipped, made, failed, time.perf_counter() - start, tuple(sorted(nodes)))
