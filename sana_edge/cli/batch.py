"""`sana-edge batch PROMPTS -o OUTDIR`: many images, resumable, in-process or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..checks import GUIDANCE, SEED, STEPS, THREADS
from ..errors import UserError
from .app import app, number_option
from .app import console as make_console
from .serve import resolve_models


@app.command()
def batch(
    prompts: Path = typer.Argument(..., help="Text file, one prompt per line; or JSONL with per-line "
                                   "prompt, negative_prompt, seed, size, steps, guidance_scale."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the PNGs and index.jsonl (re-runs resume)."),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Export folder (default: the exported built-in model)."),
    steps: int = number_option(20, "--steps", limit=STEPS, help="Denoising steps for lines that do not set them."),
    guidance: float = number_option(4.5, "--guidance", limit=GUIDANCE,
                                    help="Classifier-free guidance scale for lines that do not set it."),
    seed: int = number_option(0, "--seed", limit=SEED, help="Base seed: a line without a seed gets base + its position."),
    size: Optional[str] = typer.Option(None, help="WxH for lines that do not set it (default: model size)."),
    negative_prompt: str = typer.Option("", help="Negative prompt for lines that do not set one."),
    threads: Optional[int] = number_option(None, "--threads", limit=THREADS,
                                           help="ONNX Runtime threads in-process (default: all cores)."),
    ray: Optional[str] = typer.Option(
        None, "--ray", is_flag=False, flag_value="", metavar="[ADDRESS]",
        help="Run on Ray Data: join the cluster at ADDRESS (HOST:PORT or auto); alone, Ray's default "
             "(RAY_ADDRESS, else a local Ray on this machine)."),
    workers: Optional[int] = number_option(
        None, "--workers", limit=THREADS, help="With --ray: actors in the pool (default: cluster CPUs / --cpus-per-worker)."),
    cpus_per_worker: int = number_option(1, "--cpus-per-worker", limit=THREADS,
                                         help="With --ray: CPUs per actor = its ONNX Runtime threads."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
):
    """Generate one PNG per prompt into OUTDIR with index.jsonl; a re-run skips what is done."""
    from ..batch.items import Defaults, parse_size, read_items
    from ..batch.runner import local_results, run_batch

    export_dir = resolve_models([model] if model else [])[0]
    width = height = None
    if size is not None:
        width, height = parse_size(size, "--size")
    items = read_items(prompts, Defaults(negative_prompt, seed, width, height, steps, guidance))
    if output.exists() and not output.is_dir():
        raise UserError(f"output '{output}' is a file; give a folder for the images and index.jsonl")
    if ray is None:
        if workers is not None:
            raise UserError("--workers needs --ray (in-process runs one pipeline; use --threads for its cores)")
        results = local_results(export_dir, threads, not no_verify)
    else:
        from .app import require_extra

        require_extra("ray", ("ray", "ray.data"))
        from ..batch.ray_runner import ray_results

        results = ray_results(export_dir, ray or None, workers, cpus_per_worker, not no_verify)
    console = make_console(stderr=True)
    summary = run_batch(items, output, results, console)
    console.print(f"{summary.describe()} -> {output / 'index.jsonl'}")
    if summary.failed:
        console.print(f"error: {summary.failed} item(s) failed; their errors are in index.jsonl, and a re-run "
                      "retries them")
        raise typer.Exit(1)
