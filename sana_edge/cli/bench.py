"""`sana-edge bench`: the latency benchmark (benchmarks/latency.py, installed as
sana_edge.benchmarks), which needs the `export` and `bench` extras; imported in the body."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..checks import REPEATS, THREADS, WARMUP, check_image_side
from ..errors import UserError
from .app import app, number_option, require_extra


@app.command("bench")
def bench_command(
    model: str = typer.Option("sana-0.6b", help="sana-0.6b, sana-1.6b or tiny."),
    sizes: str = typer.Option("512,1024", help="Comma-separated resolutions in px."),
    backends: str = typer.Option("torch-fp32,ort-fp32,ort-int8,ort-int4",
                                 help="Comma-separated backends (see `python -m benchmarks.latency --help`)."),
    repeats: int = number_option(3, "--repeats", limit=REPEATS, help="Timed runs per stage (interleaved across backends)."),
    warmup: int = number_option(1, "--warmup", limit=WARMUP, help="Untimed runs per worker before timing."),
    threads: int = number_option(os.cpu_count() or 1, "--threads", limit=THREADS, help="Intra-op threads for every backend."),
    quick: bool = typer.Option(False, "--quick", help="Tiny model, one size, 2 repeats (CI)."),
    isolate: bool = typer.Option(False, "--isolate", help="Never keep two workers loaded together."),
    out: Optional[Path] = typer.Option(
        None, help="Folder for <machine-tag>.json/.md/.png (default: bench/ under the sana-edge cache folder)."),
    cache: Optional[Path] = typer.Option(None, help="Export cache folder (default: under the sana-edge cache)."),
):
    """Benchmark latency and memory per stage and resolution against diffusers."""
    from ..default_model import sana_edge_home
    from ..inputs import check_output_folder

    for size in sizes.split(","):
        if not size.strip().isdigit():
            raise UserError(f"--sizes '{sizes}' must be comma-separated whole numbers of px, e.g. 512,1024")
        check_image_side("--sizes", int(size), 32)
    out = out if out is not None else sana_edge_home() / "bench"  # never into the source checkout
    check_output_folder(out, "--out")
    if cache is not None:
        check_output_folder(cache, "--cache")
    require_extra("export", ("torch", "diffusers", "transformers", "onnx"))
    require_extra("bench", ("matplotlib",))
    from ..benchmarks import latency

    argv = ["--model", model, "--sizes", sizes, "--backends", backends, "--repeats", str(repeats), "--warmup", str(warmup),
            "--threads", str(threads), "--out", str(out)]
    argv += ["--cache", str(cache if cache is not None else sana_edge_home() / "bench-exports")]
    argv += ["--quick"] * quick + ["--isolate"] * isolate
    _check_arguments(latency, argv)
    latency.main(argv)


def _check_arguments(latency, argv: list[str]) -> None:
    """The benchmark's own parser (argparse) prints its usage and exits; here it is one line."""
    import contextlib
    import io

    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            latency.parse_args(argv)
    except SystemExit:
        lines = printed.getvalue().strip().splitlines() or ["invalid arguments"]
        raise UserError(f"{lines[-1].split('error: ', 1)[-1]}; see `sana-edge bench --help`") from None
