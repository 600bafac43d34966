"""`sana-edge run` and `sana-edge doctor`: the runtime commands (numpy + onnxruntime, no torch)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from ..checks import GUIDANCE, IMAGE_SIDE, MEMORY_BUDGET, SEED, STEPS
from ..default_model import default_export_dir
from ..errors import UserError
from .app import app, number_option
from .app import console as make_console

MEMORY_BUDGET_TEXT = "1MB..1024TB"


@app.command()
def run(
    prompt: str = typer.Argument(..., help="What to draw (an empty string is an unconditional prompt)."),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Export folder made by `sana-edge export` (default: the exported built-in model)."),
    output: Path = typer.Option(Path("image.png"), "-o", "--output", help="PNG file to write."),
    steps: int = number_option(20, "--steps", limit=STEPS, help="Denoising steps."),
    guidance: float = number_option(4.5, "--guidance", limit=GUIDANCE,
                                    help="Classifier-free guidance scale (<= 1 turns CFG off)."),
    seed: Optional[int] = number_option(None, "--seed", limit=SEED, help="Seed for the initial noise (random if omitted)."),
    height: Optional[int] = number_option(None, "--height", limit=IMAGE_SIDE,
                                          help="Image height in px, a multiple of 32 (default: model size)."),
    width: Optional[int] = number_option(None, "--width", limit=IMAGE_SIDE,
                                         help="Image width in px, a multiple of 32 (default: model size)."),
    negative_prompt: str = typer.Option("", help="Negative prompt."),
    latents: Optional[Path] = typer.Option(None, help=".npy file with the initial noise (1, C, H/32, W/32)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
    backend: str = typer.Option("auto", help="auto (OpenVINO for a --target openvino export, TensorRT when the export "
                                "has engines and a GPU is here, ONNX Runtime on the GPU (ort-cuda) with onnxruntime-gpu "
                                "and a GPU, else ONNX Runtime on the CPU), onnxruntime, ort-cuda, openvino or tensorrt."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="ort-cuda: capture the denoising step as a CUDA graph."),
    device: Optional[str] = typer.Option(
        None, help="OpenVINO device: CPU, GPU, NPU or AUTO (with --backend openvino; default CPU)."),
    max_memory: Optional[str] = typer.Option(
        None, help=f"Memory budget, e.g. 8GB (default: what the device has; {MEMORY_BUDGET_TEXT}); "
        "sets decoder tiling and residency."),
    keep_loaded: bool = typer.Option(
        False, "--keep-loaded", help="Keep every stage loaded (when the budget allows); by default one image "
                                     "releases each stage after use, for the lowest peak memory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every input and print the memory plan; generate nothing."),
):
    """Generate an image from a prompt with an exported model."""
    from ..checks import check_text
    from ..image_io import save_png
    from ..inputs import check_output_file, load_latents_file
    from ..pipeline import SanaEdgePipeline

    # Everything the user named is checked before the model loads (and long before generation).
    check_text("prompt", prompt)
    check_text("--negative-prompt", negative_prompt)
    check_output_file(output, ".png", "-o")
    initial = load_latents_file(latents) if latents is not None else None
    budget = _memory_budget(max_memory)
    if model is None:
        model = default_export_dir()
        if not (model / "manifest.json").is_file():
            raise UserError(f"no --model given and the built-in model is not exported yet ({model}); "
                            "run `sana-edge export` (or `make demo`) first, or pass --model DIR")
    options = {"device": device} if device is not None else {}
    if cuda_graph:
        options["cuda_graph"] = True
    with warnings.catch_warnings(record=True) as at_load:  # e.g. auto not using engines this GPU cannot run
        warnings.simplefilter("always", UserWarning)
        pipe = SanaEdgePipeline.from_export(model, backend=backend, verify=not no_verify, max_memory=budget,
                                            keep_loaded=keep_loaded, **options)
    _print_warnings(at_load)
    console = make_console()
    request = dict(negative_prompt=negative_prompt, height=height, width=width, steps=steps,
                   guidance_scale=guidance, seed=seed, latents=initial)
    if dry_run:
        prepared = pipe.prepare(prompt, **request)
        console.print(f"inputs are valid: {prepared.width}x{prepared.height}, {steps} steps, guidance {guidance}, "
                      f"{pipe.manifest.precision}; nothing generated (--dry-run)")
        console.print(prepared.plan.describe())
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    # No progress bar when stdout is not a terminal: rich would print an empty line for it.
    progress = Progress("denoising", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=not console.is_terminal)
    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        task = progress.add_task("denoise", total=steps)
        result = pipe.generate(prompt, **request, on_step=lambda done, total, _latents: progress.update(task, completed=done))
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


def _memory_budget(max_memory: str | None) -> int | None:
    if max_memory is None:
        return None
    from ..memory import parse_bytes

    try:
        budget = parse_bytes(max_memory)
    except ValueError as exc:
        raise UserError(f"--max-memory: {exc}") from None
    problem = MEMORY_BUDGET.problem(budget)
    if problem:
        raise UserError(f"--max-memory {max_memory} is {budget} bytes, outside {MEMORY_BUDGET_TEXT}; write e.g. 8GB")
    return budget


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
