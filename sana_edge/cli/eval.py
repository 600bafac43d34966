"""`sana-edge eval A B`: options here, the comparison in sana_edge.evaluation (runtime only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from .app import app
from .app import console as make_console


@app.command("eval")
def eval_command(
    export_a: Path = typer.Argument(..., help="Reference export folder (e.g. fp32)."),
    export_b: Path = typer.Argument(..., help="Export folder to compare against it (e.g. int8)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Text file, one prompt per line (# comments and blank lines ignored)."),
    size: int = typer.Option(512, "--size", help="Image height and width in px, a multiple of the VAE scale factor."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(
        None, "--guidance", help="Guidance scale (default: the model's; for Sana <= 1 turns CFG off)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed of the first prompt (prompt i uses seed + i)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result to this JSON file."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
):
    """Compare export B against export A from the same noise: latent SQNR, PSNR/SSIM, cosines, latency."""
    from ..evaluation import DEFAULT_PROMPTS, compare_exports, render, write_result_json
    from ..prompt import read_prompt_file

    prompt_list = read_prompt_file(prompts, "prompts") if prompts is not None else list(DEFAULT_PROMPTS)
    if json_out is not None:  # refuse before minutes of generation, not after
        if json_out.is_dir():
            raise UserError(f"--json '{json_out}' is a folder; pass a file path such as {json_out / 'eval.json'}")
        if not json_out.parent.is_dir():
            raise UserError(f"folder '{json_out.parent}' for --json does not exist; create it first")
    console = make_console()
    result = compare_exports(
        export_a, export_b, prompt_list, size=size, steps=steps, guidance_scale=guidance, seed=seed,
        verify=not no_verify, log=console.print,
    )
    render(result, console)
    if json_out is not None:
        write_result_json(json_out, result)
        console.print(f"wrote {json_out}")
