"""The `sana-edge` command line. Build-side commands import torch lazily, inside the command."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from .default_model import BUILTIN_NAME, default_export_dir, is_builtin
from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="SANA text-to-image on exported graphs.")


def _console(stderr: bool = False):
    from rich.console import Console

    # markup off: messages carry literal brackets (pip extras like sana-edge[export], shapes)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)


def _require_export_extra():
    """Import the build side, or explain which extra to install."""
    try:
        from .export import exporter  # noqa: F401  (sana_edge.export, installed from export/)
        import diffusers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        raise UserError(
            f"this command needs the build-side packages ({exc.name} is missing); "
            "install them with: pip install 'sana-edge[export]'"
        ) from None


@app.command("init-tiny")
def init_tiny(
    out_dir: Path = typer.Argument(..., help="Folder to write the tiny checkpoint to."),
    seed: int = typer.Option(0, help="Seed for the random weights."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty folder."),
    preset: str = typer.Option("tiny", help="tiny (tests, demo) or mid (full 0.6B width, 4 layers)."),
):
    """Write a tiny random-weight SANA checkpoint (diffusers layout) for tests and demos."""
    _require_export_extra()
    from .export.exporter import check_out_dir, staging_dir
    from .export.tiny import write_tiny_checkpoint

    from .export.configs import PRESETS

    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    check_out_dir(out_dir, force)
    with staging_dir(out_dir) as stage:
        write_tiny_checkpoint(stage, seed=seed, preset=preset)
    _console().print(f"tiny SANA checkpoint written to {out_dir}")


@app.command()
def export(
    checkpoint: str = typer.Argument(
        BUILTIN_NAME, help=f"diffusers-format SANA folder or hub id (default: the built-in {BUILTIN_NAME})."),
    out_dir: Optional[Path] = typer.Option(
        None, "-o", "--out", help="Export folder to create (default for the built-in model: where `run` looks)."),
    precision: str = typer.Option("fp32", help="fp32, fp16, int8 (W8A8, calibrated) or int4 (weight-only)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
    target: Optional[str] = typer.Option(
        None, help="int8/int4 graph flavour: ort (ONNX Runtime) or tensorrt (default: tensorrt with --backend tensorrt)."),
    calib_prompts: Optional[Path] = typer.Option(None, help="Calibration prompts, one per line (default: the shipped set)."),
    calib_size: int = typer.Option(16, help="How many calibration prompts to run."),
    calib_steps: int = typer.Option(8, help="Sampling steps of each calibration trajectory (all recorded)."),
    calib_seed: int = typer.Option(0, help="Seed of the calibration noise."),
    calib_resolution: Optional[int] = typer.Option(
        None, help="Calibration image side in px (default: the model's base size, at most 512)."),
    keep_fp: Optional[list[str]] = typer.Option(
        None, help="Transformer node-name regex to keep unquantized (repeatable; replaces the default list)."),
    smoothquant_alpha: Optional[float] = typer.Option(None, help="SmoothQuant migration strength in [0, 1] (int8)."),
    block_size: int = typer.Option(128, help="int4/int8 weight-only block size."),
    text_encoder_bits: Optional[int] = typer.Option(
        None, help="Text encoder weight-only bits, 4 or 8 (default: 8 for int8, 4 for int4)."),
    backend: str = typer.Option("onnxruntime", help="onnxruntime (graphs only) or tensorrt (graphs + engines)."),
    min_size: int = typer.Option(512, help="TensorRT: smallest image side (px) the engines run."),
    opt_size: int = typer.Option(1024, help="TensorRT: image side (px) the engines are tuned for."),
    max_size: int = typer.Option(1024, help="TensorRT: largest image side (px) the transformer engine runs."),
    decoder_tile: int = typer.Option(1024, help="TensorRT: largest decoder input (px); larger images decode in tiles."),
    compute_capability: Optional[str] = typer.Option(
        None, help="TensorRT-RTX: target GPU, e.g. 8.9 (default: portable across Ampere and later RTX GPUs)."),
):
    """Export text encoder, transformer and DC-AE decoder to validated ONNX graphs (and TensorRT engines)."""
    if out_dir is None:
        if not is_builtin(checkpoint):
            raise UserError(f"pass the export folder to create with -o DIR (e.g. -o {Path(checkpoint).name or 'sana'}-onnx)")
        out_dir = default_export_dir()
    _require_export_extra()
    from .export.exporter import ExportOptions, export_checkpoint
    from .quant.recipes import DEFAULT_KEEP_FP, QuantOptions

    if backend not in ("onnxruntime", "tensorrt"):
        raise UserError(f"unknown backend '{backend}'; choose onnxruntime or tensorrt")
    engines = None
    if backend == "tensorrt":
        from .export.engine import EngineRange

        engines = EngineRange(min_size, opt_size, max_size, decoder_tile, compute_capability)
    quant = QuantOptions(
        target=target or ("tensorrt" if backend == "tensorrt" else "ort"), calib_prompts=calib_prompts, calib_size=calib_size, calib_steps=calib_steps,
        calib_resolution=calib_resolution, seed=calib_seed, keep_fp=tuple(keep_fp) if keep_fp else DEFAULT_KEEP_FP,
        smoothquant_alpha=smoothquant_alpha, block_size=block_size, text_encoder_bits=text_encoder_bits,
    )
    quant.check()
    console = _console()
    export_checkpoint(
        ExportOptions(checkpoint=checkpoint, out_dir=out_dir, precision=precision, force=force, quant=quant,
                      engines=engines),
        log=console.print,
    )


@app.command()
def run(
    prompt: str = typer.Argument(..., help="What to draw (an empty string is an unconditional prompt)."),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Export folder made by `sana-edge export` (default: the exported built-in model)."),
    output: Path = typer.Option(Path("image.png"), "-o", "--output", help="PNG file to write."),
    steps: int = typer.Option(20, help="Denoising steps."),
    guidance: float = typer.Option(4.5, help="Classifier-free guidance scale (<= 1 turns CFG off)."),
    seed: Optional[int] = typer.Option(None, help="Seed for the initial noise (random if omitted)."),
    height: Optional[int] = typer.Option(None, help="Image height in px, a multiple of 32 (default: model size)."),
    width: Optional[int] = typer.Option(None, help="Image width in px, a multiple of 32 (default: model size)."),
    negative_prompt: str = typer.Option("", help="Negative prompt."),
    latents: Optional[Path] = typer.Option(None, help=".npy file with the initial noise (1, C, H/32, W/32)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
    backend: str = typer.Option("auto", help="auto (TensorRT when the export has engines and a GPU is here), "
                                "onnxruntime or tensorrt."),
    max_memory: Optional[str] = typer.Option(
        None, help="Memory budget, e.g. 8GB (default: what the device has); sets decoder tiling and residency."),
    keep_loaded: bool = typer.Option(False, "--keep-loaded", help="Keep every stage loaded (when the budget allows)."),
):
    """Generate an image from a prompt with an exported model."""
    import numpy as np

    from .image_io import save_png
    from .pipeline import SanaEdgePipeline

    if model is None:
        model = default_export_dir()
        if not (model / "manifest.json").is_file():
            raise UserError(f"no --model given and the built-in model is not exported yet ({model}); "
                            "run `sana-edge export` (or `make demo`) first, or pass --model DIR")
    if output.suffix.lower() != ".png":
        raise UserError(f"output '{output}' must end in .png")
    if not output.parent.exists():
        raise UserError(f"folder '{output.parent}' for the output does not exist; create it first")
    initial = None
    if latents is not None:
        if not latents.is_file():
            raise UserError(f"latents file '{latents}' does not exist")
        initial = np.load(latents)
    budget = None
    if max_memory is not None:
        from .memory import parse_bytes

        try:
            budget = parse_bytes(max_memory)
        except ValueError as exc:
            raise UserError(f"--max-memory: {exc}") from None
    pipe = SanaEdgePipeline.from_export(model, backend=backend, verify=not no_verify, max_memory=budget,
                                        keep_loaded=keep_loaded)
    console = _console()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    progress = Progress("denoising", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        task = progress.add_task("denoise", total=steps)
        result = pipe.generate(
            prompt, negative_prompt=negative_prompt, height=height, width=width, steps=steps,
            guidance_scale=guidance, seed=seed, latents=initial,
            on_step=lambda done, total, _latents: progress.update(task, completed=done),
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    image = result.image
    metadata = {
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": "latents-file" if initial is not None else result.seed,
        "steps": steps, "guidance": guidance, "size": f"{image.width}x{image.height}",
        "precision": pipe.manifest.precision, "model": str(model),
    }
    save_png(image, output, metadata)
    t = result.timings
    console.print(
        f"saved {output} ({image.width}x{image.height}, {steps} steps, {pipe.manifest.precision}, seed {metadata['seed']}) "
        f"| text encoder {t['text_encoder']:.2f}s, denoise {t['denoise']:.2f}s "
        f"({1000 * t['denoise'] / steps:.0f} ms/step), decode {t['decode']:.2f}s"
    )
    _print_memory(console, pipe, result)


def _print_memory(console, pipe, result) -> None:
    from .memory import format_bytes

    kind = "RSS" if pipe.backend.name == "onnxruntime" else "GPU memory"
    peaks = ", ".join(f"{stage} {format_bytes(b)}" for stage, b in result.memory.items())
    console.print(f"{pipe.backend.describe()} | peak {kind}: {peaks}")
    console.print(result.plan.describe())
    for note in result.plan.notes:
        console.print(f"note: {note}")


@app.command()
def doctor():
    """Print versions and which backends/providers this machine can run."""
    from .doctor import report

    _console().print(report())


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # click's usage errors and aborts
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return 2
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


def entry_point() -> None:
    sys.exit(main())


def _register_late_commands() -> None:
    """Commands that live in their own modules (kept light: they import heavy deps lazily)."""
    from .fidelity import eval_command

    app.command("eval")(eval_command)
    from .benchmarks.latency import bench_command  # sana_edge.benchmarks is the benchmarks/ folder

    app.command("bench")(bench_command)
    # Light to import (torch and diffusers load inside the command); the command itself checks
    # for the export extra.
    from .export.train_shapes import train_tiny_command

    app.command("train-tiny")(train_tiny_command)


_register_late_commands()
