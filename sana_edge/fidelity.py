"""`sana-edge eval A B`: how far export B (e.g. int8) drifts from export A (e.g. fp32).

Both pipelines start from the same noise, prompt and settings; we record the latent SQNR after
every denoising step, the final images' PSNR/SSIM, and each component's output cosine on
identical inputs (so a drift can be pinned to the text encoder, the DiT or the decoder).
numpy only: like the rest of the runtime this must run on a machine without torch.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from . import shapes
from .components import TEXT_ENCODER, TRANSFORMER
from .errors import UserError
from .prompt import read_prompt_file

DEFAULT_PROMPTS = (
    "a red fox sitting in fresh snow at sunrise",
    "a cyberpunk city street at night with neon signs and rain",
    "portrait of an old sailor with a grey beard, oil painting",
    "a bowl of ramen with a soft boiled egg, studio lighting",
)
# Summary rows, in display order: record key -> label.
METRICS = {
    "text_encoder_cosine": "text-encoder cosine",
    "transformer_cosine": "transformer cosine",
    "decoder_cosine": "decoder cosine",
    "final_latent_sqnr_db": "final-step latent SQNR (dB)",
    "psnr_db": "PSNR (dB)",
    "ssim": "SSIM",
    "latency_a_s": "latency A (s)",
    "latency_b_s": "latency B (s)",
}

# -- metrics (float64 throughout: fp32 accumulation would itself cost SQNR at these sizes) ----


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if np.array_equal(a, b):
        return 1.0  # exact, instead of 1 +- rounding of the norms
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB (+inf if equal)."""
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - np.asarray(test, np.float64)) ** 2))
    if noise == 0.0:
        return math.inf
    signal = float(np.sum(reference**2))
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def psnr(ref_uint8: np.ndarray, test_uint8: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images, peak 255 (+inf if equal)."""
    mse = float(np.mean((np.asarray(ref_uint8, np.float64) - np.asarray(test_uint8, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D 'valid' correlation over the last two axes (scipy is not a dependency).

    'valid' (no padding) is the original SSIM definition: border windows see no invented pixels.
    """
    k = len(window)
    rows = sum(w * x[..., i : x.shape[-2] - k + 1 + i, :] for i, w in enumerate(window))
    return sum(w * rows[..., i : x.shape[-1] - k + 1 + i] for i, w in enumerate(window))


def ssim(ref_uint8: np.ndarray, test_uint8: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian window 11/1.5, K1=0.01, K2=0.03, L=255.

    Images are (H, W) or (H, W, C); computed per channel and averaged.
    """
    ref = np.asarray(ref_uint8, np.float64)
    test = np.asarray(test_uint8, np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"ssim needs images of one shape, got {ref.shape} and {test.shape}")
    if np.array_equal(ref, test):
        return 1.0
    if ref.ndim == 2:
        ref, test = ref[..., None], test[..., None]
    window = _gaussian_window()
    if min(ref.shape[:2]) < len(window):
        raise ValueError(f"ssim needs images of at least {len(window)}x{len(window)} px, got {ref.shape[:2]}")
    x, y = ref.transpose(2, 0, 1), test.transpose(2, 0, 1)  # channels first: filter the last two axes
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
    var_x = _filter_valid(x * x, window) - mu_x**2
    var_y = _filter_valid(y * y, window) - mu_y**2
    cov = _filter_valid(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(np.mean(ssim_map.mean(axis=(1, 2))))


# -- comparison ------------------------------------------------------------------------------


def read_prompts(path: Path) -> list[str]:
    return read_prompt_file(path, "prompts")


def _check_settings(prompts, steps: int, seed: int) -> None:
    """Checks that need no export: run before loading (and hashing) two models."""
    if not prompts:
        raise UserError("no prompts to compare; pass at least one prompt")
    if steps < 1:
        raise UserError(f"steps must be at least 1 (got {steps}); pass --steps 20")
    if seed < 0:
        raise UserError(f"seed must be 0 or more (got {seed}); pass --seed 0")


def _check_comparable(manifest_a, manifest_b, size: int) -> None:
    for key in ("latent_channels", "vae_scale_factor"):
        value_a, value_b = manifest_a.model[key], manifest_b.model[key]
        if value_a != value_b:
            raise UserError(
                f"exports '{manifest_a.root}' and '{manifest_b.root}' are not comparable ({key} {value_a} vs {value_b}); "
                "compare two exports of the same checkpoint"
            )
    factor = int(manifest_a.model["vae_scale_factor"])
    if size <= 0 or size % factor:
        raise UserError(f"size {size} must be a positive multiple of {factor}, the exports' VAE scale factor (e.g. {max(factor, round(size / factor) * factor)})")


def _text_encoder_cosine(pipe_a, pipe_b, prompt: str) -> float:
    tokens = pipe_a.tokenizer.positive(prompt)
    feeds = {"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask}
    hidden = [p.session(TEXT_ENCODER.name).run(feeds)["last_hidden_state"] for p in (pipe_a, pipe_b)]
    # Compare only what the DiT attends to: the selected, unmasked positions. Padding outputs are
    # masked downstream, so their drift would only blur the number.
    selected = [pipe_a.tokenizer.select(h, tokens.attention_mask) for h in hidden]
    keep = selected[0][1][0].astype(bool)
    if not keep.any():
        return cosine(hidden[0], hidden[1])
    return cosine(selected[0][0][:, keep], selected[1][0][:, keep])


def _timed_generate(pipe, prompt, latents, size, steps, guidance_scale):
    """Run one generation; return (uint8 image, per-step latents, seconds)."""
    captured = []
    start = time.perf_counter()
    result = pipe.generate(
        prompt, negative_prompt="", height=size, width=size, steps=steps, guidance_scale=guidance_scale,
        latents=latents, on_step=lambda done, total, step_latents: captured.append(step_latents.copy()),
    )
    seconds = time.perf_counter() - start
    return np.asarray(result.image), captured, seconds


def compare_exports(
    export_a, export_b, prompts, size: int = 512, steps: int = 20, guidance_scale: float = 4.5, seed: int = 0,
    verify: bool = True, log: Callable[[str], None] | None = None,
) -> dict:
    """Generate every prompt with both exports from the same noise; return the metrics as a dict."""
    from .pipeline import SanaEdgePipeline
    from .scheduler import FlowDPMSolver

    prompts = list(prompts)
    _check_settings(prompts, steps, seed)
    task_prompts = all(shapes.is_caption(p) for p in prompts)
    pipe_a = SanaEdgePipeline.from_export(export_a, verify=verify)
    pipe_b = SanaEdgePipeline.from_export(export_b, verify=verify)
    _check_comparable(pipe_a.manifest, pipe_b.manifest, size)
    for pipe in (pipe_a, pipe_b):  # load the graphs now, so latencies time inference, not loading
        for name in pipe.manifest.components:
            pipe.session(name)

    model = pipe_a.manifest.model
    factor, channels = int(model["vae_scale_factor"]), int(model["latent_channels"])
    timesteps = FlowDPMSolver.from_diffusers_config(pipe_a.scheduler_config).set_timesteps(steps)
    # DiT probes: the first step (pure noise) and a middle one (partly denoised latents).
    probe_steps = sorted({0, steps // 2})
    records = []
    for i, prompt in enumerate(prompts):
        noise = np.random.default_rng(seed + i).standard_normal((1, channels, size // factor, size // factor), dtype=np.float32)
        # Alternate which export runs first, so warm caches do not always favour the same one.
        order = (pipe_a, pipe_b) if i % 2 == 0 else (pipe_b, pipe_a)
        runs = {id(p): _timed_generate(p, prompt, noise, size, steps, guidance_scale) for p in order}
        image_a, latents_a, seconds_a = runs[id(pipe_a)]
        image_b, latents_b, seconds_b = runs[id(pipe_b)]

        embeds, mask = pipe_a.encode_prompts(prompt, "" if guidance_scale > 1.0 else None)
        transformer_cosines = {}
        for step in probe_steps:
            step_input = noise if step == 0 else latents_a[step - 1]  # latents entering `step`
            feeds = pipe_a.transformer_feeds(step_input, embeds, mask, timesteps[step])
            outputs = [p.session(TRANSFORMER.name).run(feeds)["velocity"] for p in (pipe_a, pipe_b)]
            transformer_cosines[str(step + 1)] = cosine(*outputs)  # 1-based, as on_step counts

        step_sqnr = [sqnr_db(a, b) for a, b in zip(latents_a, latents_b)]
        record = {
            "prompt": prompt,
            "noise_seed": seed + i,
            "text_encoder_cosine": _text_encoder_cosine(pipe_a, pipe_b, prompt),
            "transformer_cosine": min(transformer_cosines.values()),
            "transformer_cosine_by_step": transformer_cosines,
            "decoder_cosine": cosine(pipe_a.decode(latents_a[-1]), pipe_b.decode(latents_a[-1])),
            "latent_sqnr_db": step_sqnr,
            "final_latent_sqnr_db": step_sqnr[-1],
            "psnr_db": psnr(image_a, image_b),
            "ssim": ssim(image_a, image_b),
            "latency_a_s": seconds_a,
            "latency_b_s": seconds_b,
        }
        if task_prompts:
            record["task_a"], record["task_b"] = (shapes.score_image(im, prompt) for im in (image_a, image_b))
        records.append(record)
        if log:
            log(f"prompt {i + 1}/{len(prompts)}: PSNR {_fmt(record['psnr_db'])} dB, SSIM {_fmt(record['ssim'], 4)}, "
                f"final latent SQNR {_fmt(record['final_latent_sqnr_db'])} dB")

    summary = {key: {"min": min(r[key] for r in records), "mean": _mean([r[key] for r in records])} for key in METRICS}
    # Mean in dB over prompts, step by step (inf stays inf: a step identical for every prompt).
    if task_prompts:  # the shapes model's captions: how many images are still right, per export
        summary["task_score"] = {side: shapes.summarize([r[f"task_{side}"] for r in records]) for side in "ab"}
    summary["latent_sqnr_db_per_step"] = [_mean(list(column)) for column in zip(*(r["latent_sqnr_db"] for r in records))]
    return {
        "config": {
            "export_a": str(export_a), "export_b": str(export_b),
            "precision_a": pipe_a.manifest.precision, "precision_b": pipe_b.manifest.precision,
            "size": size, "steps": steps, "guidance_scale": guidance_scale, "seed": seed,
            "negative_prompt": "", "transformer_probe_steps": [s + 1 for s in probe_steps], "prompts": prompts,
        },
        "prompts": records,
        "summary": summary,
    }


def _mean(values: list[float]) -> float:
    return math.inf if math.inf in values else float(np.mean(values))


# -- output ----------------------------------------------------------------------------------


def json_safe(value):
    """inf -> "inf", -inf -> "-inf", nan -> None, recursively: the file stays strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    elif isinstance(value, np.integer):
        return int(value)
    return value


def write_result_json(path: Path, result: dict) -> None:
    """Write through a temp file and rename, so a failure never leaves a half-written file."""
    text = json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fmt(value: float, digits: int = 2) -> str:
    if math.isinf(value):
        return str(value)
    text = f"{value:.{digits}f}"
    if value < 1.0 and text == f"{1:.{digits}f}":  # a cosine of 0.99999992 is not 1: show the gap
        return f"1 - {1.0 - value:.1e}"
    return text


def _metric_digits(key: str) -> int:
    return 6 if key.endswith("cosine") else 4 if key == "ssim" else 3 if key.startswith("latency") else 2


def render(result: dict, console) -> None:
    from rich.table import Table

    config, summary = result["config"], result["summary"]
    table = Table(title=f"B ({config['precision_b']}) vs A ({config['precision_a']}), {len(config['prompts'])} prompts")
    table.add_column("metric")
    table.add_column("min", justify="right")
    table.add_column("mean", justify="right")
    for key, label in METRICS.items():
        digits = _metric_digits(key)
        table.add_row(label, _fmt(summary[key]["min"], digits), _fmt(summary[key]["mean"], digits))
    console.print(table)
    console.print("per-step latent SQNR (dB, mean over prompts): " + " ".join(_fmt(v, 1) for v in summary["latent_sqnr_db_per_step"]))
    if "task_score" in summary:
        task = summary["task_score"]
        console.print(f"shapes task score: A ({config['precision_a']}) {task['a']['overall']:.1%}, "
                      f"B ({config['precision_b']}) {task['b']['overall']:.1%} "
                      f"({100 * (task['b']['overall'] - task['a']['overall']):+.1f} points)")
    ratio = summary["latency_a_s"]["mean"] / summary["latency_b_s"]["mean"]
    console.print(
        f"{config['precision_b']} vs {config['precision_a']} at {config['size']} px, {config['steps']} steps: "
        f"min PSNR {_fmt(summary['psnr_db']['min'])} dB, min SSIM {_fmt(summary['ssim']['min'], 4)}, "
        f"final latent SQNR {_fmt(summary['final_latent_sqnr_db']['min'])} dB, B runs at {ratio:.2f}x A's speed"
    )


def eval_command(
    export_a: Path = typer.Argument(..., help="Reference export folder (e.g. fp32)."),
    export_b: Path = typer.Argument(..., help="Export folder to compare against it (e.g. int8)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Text file, one prompt per line (# comments and blank lines ignored)."),
    size: int = typer.Option(512, "--size", help="Image height and width in px, a multiple of the VAE scale factor."),
    steps: int = typer.Option(20, "--steps", help="Denoising steps."),
    guidance: float = typer.Option(4.5, "--guidance", help="Classifier-free guidance scale (<= 1 turns CFG off)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed of the first prompt (prompt i uses seed + i)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result to this JSON file."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check of the export files."),
):
    """Compare export B against export A from the same noise: latent SQNR, PSNR/SSIM, cosines, latency."""
    from rich.console import Console

    prompt_list = read_prompts(prompts) if prompts is not None else list(DEFAULT_PROMPTS)
    if json_out is not None:  # refuse before minutes of generation, not after
        if json_out.is_dir():
            raise UserError(f"--json '{json_out}' is a folder; pass a file path such as {json_out / 'eval.json'}")
        if not json_out.parent.is_dir():
            raise UserError(f"folder '{json_out.parent}' for --json does not exist; create it first")
    console = Console(highlight=False, soft_wrap=True)
    result = compare_exports(
        export_a, export_b, prompt_list, size=size, steps=steps, guidance_scale=guidance, seed=seed,
        verify=not no_verify, log=console.print,
    )
    render(result, console)
    if json_out is not None:
        write_result_json(json_out, result)
        console.print(f"wrote {json_out}")
