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
    steps: Optional[int] = number_option(
        None, "--steps", limit=STEPS, help="Denoising steps (default: the model's, 20 for Sana, 2 for Sana-Sprint)."),
    guidance: Optional[float] = number_option(
        None, "--guidance", limit=GUIDANCE, help="Guidance scale (default: the model's, 4.5): CFG for Sana (<= 1 turns "
        "it off), the embedded guidance for Sana-Sprint."),
    seed: Optional[int] = number_option(None, "--seed", limit=SEED, help="Seed for the initial noise (random if omitted)."),
    height: Optional[int] = number_option(None, "--height", limit=IMAGE_SIDE,
                                          help="Image height in px, a multiple of 32 (default: model size)."),
    width: Optional[int] = number_option(None, "--width", limit=IMAGE_SIDE,
                                         help="Image width in px, a multiple of 32 (default: model size)."),
    negative_prompt: str = typer.Option("", help="Negative prompt."),
    latents: Optional[Path] = typer.Option(None, help=".npy file with the initial noise (1, C, H/32, W/32)."),
    step_noise: Optional[Path] = typer.Option(
        None, help="Sana-Sprint: .npy file with the noise re-added after each step but the last, "
        "(steps - 1, 1, C, H/32, W/32) (default: drawn from the seed)."),
    timesteps: Optional[str] = typer.Option(
        None, help="Sana-Sprint: custom TrigFlow times, steps + 1 comma-separated values from <= 1.5708 down to 0."),
    image: Optional[Path] = typer.Option(
        None, help="Image-to-image: the input image (its size is the output's; sides must be multiples of 32 unless "
        "--height/--width say what to resize it to)."),
    strength: Optional[float] = typer.Option(
        None, help="Image-to-image: how much to change the image, in (0, 1] (default 0.6)."),
    control_image: Optional[Path] = typer.Option(
        None, help="ControlNet: the control image (e.g. an edge map); needs an export made with --controlnet."),
    control_scale: float = typer.Option(1.0, help="ControlNet: the controlnet's conditioning scale."),
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
    if strength is not None and image is None:
        raise UserError("--strength applies to image-to-image; pass the input image with --image")
    extra = _family_inputs(step_noise, timesteps, image, strength, control_image, control_scale)
    options = {"device": device} if device is not None else {}
    if cuda_graph:
        options["cuda_graph"] = True
    with warnings.catch_warnings(record=True) as at_load:  # e.g. auto not using engines this GPU cannot run
        warnings.simplefilter("always", UserWarning)
        pipe = SanaEdgePipeline.from_export(model, backend=backend, verify=not no_verify, max_memory=budget,
                                            keep_loaded=keep_loaded, **options)
    _print_warnings(at_load)
    model_values = pipe.manifest.model
    steps = model_values.default_steps if steps is None else steps
    guidance = model_values.default_guidance if guidance is None else guidance
    console = make_console()
    request = dict(negative_prompt=negative_prompt, height=height, width=width, steps=steps,
                   guidance_scale=guidance, seed=seed, latents=initial, **extra)
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
        result = pipe.generate(prompt, **request, on_step=lambda done, total, _latents: progress.update(
            task, completed=done, total=total))
    _print_warnings(caught)
    image = result.image
    metadata = {
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": "latents-file" if initial is not None else result.seed,
        "steps": steps, "guidance": guidance, "size": f"{image.width}x{image.height}",
        "precision": pipe.manifest.precision, "model": str(model),
        **{k: v for k, v in (("image", extra.get("image")), ("strength", extra.get("strength")), ("control_image", control_image),
                             ("control_scale", control_scale if control_image else None)) if v is not None},
    }
    save_png(image, output, metadata)
    t = result.timings
    console.print(
        f"saved {output} ({image.width}x{image.height}, {steps} steps, {pipe.manifest.precision}, seed {metadata['seed']}) "
        f"| text encoder {t['text_encoder']:.2f}s, denoise {t['denoise']:.2f}s "
        f"({1000 * t['denoise'] / steps:.0f} ms/step), decode {t['decode']:.2f}s"
        + (f", encode {t['encode']:.2f}s" if "encode" in t else "")
    )
    _print_memory(console, pipe, result)


def _family_inputs(step_noise, timesteps, image, strength, control_image, control_scale) -> dict:
    """generate() keywords of the Sprint, image-to-image and ControlNet options (checked there)."""
    from ..inputs import load_latents_file

    extra = {}
    if step_noise is not None:
        extra["step_noise"] = load_latents_file(step_noise, "--step-noise")
    if timesteps is not None:
        try:
            extra["timesteps"] = [float(v) for v in timesteps.split(",")]
        except ValueError:
            raise UserError(f"--timesteps '{timesteps}' is not a comma-separated list of numbers "
                            "(e.g. 1.5708,1.3,0)") from None
    if image is not None:
        from ..img2img import check_strength

        extra.update(image=image, strength=check_strength(0.6 if strength is None else strength))
    if control_image is not None:
        extra.update(control_image=control_image, control_scale=control_scale)
    return extra


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
