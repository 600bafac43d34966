"""`sana-edge eval A B`: options here, the comparison in sana_edge.evaluation (runtime only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..checks import GUIDANCE, IMAGE_SIDE, SEED, STEPS, check_text
from ..inputs import check_output_file
from .app import app, number_option
from .app import console as make_console


@app.command("eval")
def eval_command(
    export_a: Path = typer.Argument(..., help="Reference export folder (e.g. fp32)."),
    export_b: Path = typer.Argument(..., help="Export folder to compare against it (e.g. int8)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Text file, one prompt per line (# comments and blank lines ignored)."),
    size: int = number_option(512, "--size", limit=IMAGE_SIDE,
                              help="Image height and width in px, a multiple of the VAE scale factor."),
    steps: Optional[int] = number_option(None, "--steps", limit=STEPS, help="Denoising steps (default: the model's)."),
    guidance: Optional[float] = number_option(
        None, "--guidance", limit=GUIDANCE, help="Guidance scale (default: the model's; for Sana <= 1 turns CFG off)."),
    seed: int = number_option(0, "--seed", limit=SEED, help="Noise seed of the first prompt (prompt i uses seed + i)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result to this JSON file."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
):
    """Compare export B against export A from the same noise: latent SQNR, PSNR/SSIM, cosines, latency."""
    from ..evaluation import DEFAULT_PROMPTS, compare_exports, render, write_result_json
    from ..prompt import read_prompt_file

    prompt_list = read_prompt_file(prompts, "prompts") if prompts is not None else list(DEFAULT_PROMPTS)
    for prompt in prompt_list:
        check_text(f"prompt {prompt[:40]!r}", prompt)
    if json_out is not None:  # refuse before minutes of generation, not after
        check_output_file(json_out, ".json", "--json")
    console = make_console()
    result = compare_exports(
        export_a, export_b, prompt_list, size=size, steps=steps, guidance_scale=guidance, seed=seed,
        verify=not no_verify, log=console.print,
    )
    render(result, console)
    if json_out is not None:
        write_result_json(json_out, result)
        console.print(f"wrote {json_out}")
