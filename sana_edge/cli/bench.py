"""`sana-edge bench`: the latency benchmark (benchmarks/latency.py, installed as
sana_edge.benchmarks), which needs the `export` and `bench` extras; imported in the body."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .app import app, require_extra


@app.command("bench")
def bench_command(
    model: str = typer.Option("sana-0.6b", help="sana-0.6b, sana-1.6b or tiny."),
    sizes: str = typer.Option("512,1024", help="Comma-separated resolutions in px."),
    backends: str = typer.Option("torch-fp32,ort-fp32,ort-int8,ort-int4",
                                 help="Comma-separated backends (see `python -m benchmarks.latency --help`)."),
    repeats: int = typer.Option(3, help="Timed runs per stage (interleaved across backends)."),
    warmup: int = typer.Option(1, help="Untimed runs per worker before timing."),
    threads: int = typer.Option(os.cpu_count() or 1, help="Intra-op threads for every backend."),
    quick: bool = typer.Option(False, "--quick", help="Tiny model, one size, 2 repeats (CI)."),
    isolate: bool = typer.Option(False, "--isolate", help="Never keep two workers loaded together."),
    out: Path = typer.Option(Path("sana-edge-bench"), help="Folder for <machine-tag>.json/.md/.png."),
    cache: Optional[Path] = typer.Option(None, help="Export cache folder (default: under the sana-edge cache)."),
):
    """Benchmark latency and memory per stage and resolution against diffusers."""
    require_extra("export", ("torch", "diffusers", "transformers", "onnx"))
    require_extra("bench", ("matplotlib",))
    from ..benchmarks import latency

    argv = ["--model", model, "--sizes", sizes, "--backends", backends, "--repeats", str(repeats), "--warmup", str(warmup),
            "--threads", str(threads), "--out", str(out)]
    from ..default_model import sana_edge_home

    argv += ["--cache", str(cache if cache is not None else sana_edge_home() / "bench-exports")]
    latency.main(argv + ["--quick"] * quick + ["--isolate"] * isolate)
