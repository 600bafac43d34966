"""`sana-edge run` and `sana-edge doctor`: the runtime commands (numpy + onnxruntime, no torch)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from ..default_model import default_export_dir
from ..errors import UserError
from .app import app
from .app import console as make_console


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
    backend: str = typer.Option("auto", help="auto (OpenVINO for a --target openvino export, TensorRT when the export "
                                "has engines and a GPU is here, else ONNX Runtime), onnxruntime, openvino or tensorrt."),
    device: Optional[str] = typer.Option(
        None, help="OpenVINO device: CPU, GPU, NPU or AUTO (with --backend openvino; default CPU)."),
    max_memory: Optional[str] = typer.Option(
        None, help="Memory budget, e.g. 8GB (default: what the device has); sets decoder tiling and residency."),
    keep_loaded: bool = typer.Option(
        False, "--keep-loaded", help="Keep every stage loaded (when the budget allows); by default one image "
                                     "releases each stage after use, for the lowest peak memory."),
):
    """Generate an image from a prompt with an exported model."""
    import numpy as np

    from ..image_io import save_png
    from ..pipeline import SanaEdgePipeline

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
        from ..memory import parse_bytes

        try:
            budget = parse_bytes(max_memory)
        except ValueError as exc:
            raise UserError(f"--max-memory: {exc}") from None
    options = {"device": device} if device is not None else {}
    with warnings.catch_warnings(record=True) as at_load:  # e.g. auto not using engines this GPU cannot run
        warnings.simplefilter("always", UserWarning)
        pipe = SanaEdgePipeline.from_export(model, backend=backend, verify=not no_verify, max_memory=budget,
                                            keep_loaded=keep_loaded, **options)
    _print_warnings(at_load)
    console = make_console()
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
    _print_warnings(caught)
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


def _print_warnings(caught) -> None:
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)


def _print_memory(console, pipe, result) -> None:
    from ..memory import format_bytes

    kind = pipe.backend.memory_kind
    peaks = ", ".join(f"{stage} {format_bytes(b)}" for stage, b in result.memory.items())
    console.print(f"{pipe.backend.describe()} | peak {kind}: {peaks}")
    console.print(result.plan.describe())
    for note in result.plan.notes:
        console.print(f"note: {note}")
    if pipe.backend.name == "onnxruntime" and "CUDAExecutionProvider" not in getattr(pipe.backend, "providers", []):
        from ..cpu import precision_advice

        advice = precision_advice(pipe.manifest.precision)
        if advice:
            console.print(f"note: {advice}")


@app.command()
def doctor():
    """Print versions and which backends/providers this machine can run."""
    from ..doctor import report

    make_console().print(report())
