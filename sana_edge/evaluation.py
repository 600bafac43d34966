"""`sana-edge eval A B`: how far export B (e.g. int8) drifts from export A (e.g. fp32).

Both pipelines start from the same noise, prompt and settings; we record the latent SQNR after
every denoising step, the final images' PSNR/SSIM, and each component's output cosine on
identical inputs (so a drift can be pinned to the text encoder, the DiT or the decoder).
numpy only: like the rest of the runtime this must run on a machine without torch. The metrics
themselves are in sana_edge.metrics; the command's options in sana_edge.cli.eval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import shapes
from .checks import check_image_side
from .errors import UserError
from .fileio import write_json_atomic
from .metrics import cosine, json_safe, psnr, sqnr_db, ssim
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

# -- comparison ------------------------------------------------------------------------------


def _check_settings(prompts, steps: int | None, seed: int) -> None:
    """Checks that need no export: run before loading (and hashing) two models (steps None: the model's)."""
    if not prompts:
        raise UserError("no prompts to compare; pass at least one prompt")
    if steps is not None and steps < 1:
        raise UserError(f"steps must be at least 1 (got {steps}); pass --steps 20")
    if seed < 0:
        raise UserError(f"seed must be 0 or more (got {seed}); pass --seed 0")


def _check_comparable(manifest_a, manifest_b, size: int) -> None:
    """Two exports compare only when they are the same model (values and tokenizer) at any precision."""
    values_a, values_b = manifest_a.model.to_dict(), manifest_b.model.to_dict()
    differing = [k for k in values_a if values_a[k] != values_b.get(k)]
    files_a, files_b = manifest_a.files(), manifest_b.files()
    token_a, token_b = files_a.get(manifest_a.data["tokenizer"]), files_b.get(manifest_b.data["tokenizer"])
    if differing or token_a != token_b:
        what = f"{differing[0]} {values_a[differing[0]]!r} vs {values_b.get(differing[0])!r}" if differing else "tokenizers differ"
        raise UserError(
            f"exports '{manifest_a.root}' and '{manifest_b.root}' are not comparable, not the same model ({what}); "
            "compare two exports of the same checkpoint"
        )
    check_image_side("size", size, manifest_a.model.vae_scale_factor)


def _graph_pipeline(export, verify: bool):
    """The export on the runtime its graphs are written for (ONNX Runtime, or OpenVINO for IR)."""
    from .backends import get_backend, graph_backend
    from .manifest import load_manifest
    from .pipeline import SanaEdgePipeline

    manifest = load_manifest(export, verify=verify)
    return SanaEdgePipeline(manifest, get_backend(graph_backend(manifest), manifest))


def _label(manifest) -> str:
    """The precision, and the target when it is not ONNX Runtime's (e.g. 'int8 openvino')."""
    return manifest.precision + (f" {manifest.graph_format}" if manifest.graph_format != "onnx" else "")


def _text_encoder_cosine(pipe_a, pipe_b, prompt: str) -> float:
    # Each export's own prompt encoding (cached or not, old or new graph), compared only where the
    # DiT attends: the selected, unmasked positions (padding never reaches the image).
    (a, mask), (b, _) = (p.prompt_encoder.encode(prompt, None) for p in (pipe_a, pipe_b))
    keep = mask[0].astype(bool)
    if not keep.any():
        return cosine(a, b)
    return cosine(a[:, keep], b[:, keep])


def _timed_generate(pipe, prompt, latents, size, steps, guidance_scale, step_noise=None):
    """Run one generation; return (uint8 image, per-step latents, seconds)."""
    captured = []
    start = time.perf_counter()
    result = pipe.generate(
        prompt, negative_prompt="", height=size, width=size, steps=steps, guidance_scale=guidance_scale,
        latents=latents, on_step=lambda done, total, step_latents: captured.append(step_latents.copy()),
        step_noise=step_noise,
    )
    seconds = time.perf_counter() - start
    return np.asarray(result.image), captured, seconds, result.latents


def compare_exports(
    export_a, export_b, prompts, size: int = 512, steps: int | None = None, guidance_scale: float | None = None,
    seed: int = 0, verify: bool = True, log: Callable[[str], None] | None = None,
) -> dict:
    """Generate every prompt with both exports from the same noise (Sana-Sprint: and the same
    per-step noise); return the metrics as a dict. Steps and guidance default to the model's."""
    from .pipeline import SanaEdgePipeline

    prompts = list(prompts)
    _check_settings(prompts, steps, seed)
    task_prompts = all(shapes.is_caption(p) for p in prompts)
    pipe_a, pipe_b = (_graph_pipeline(export, verify) for export in (export_a, export_b))
    steps = pipe_a.manifest.model.default_steps if steps is None else steps
    guidance_scale = pipe_a.manifest.model.default_guidance if guidance_scale is None else guidance_scale
    _check_comparable(pipe_a.manifest, pipe_b.manifest, size)
    for pipe in (pipe_a, pipe_b):  # load the graphs now, so latencies time inference, not loading
        for name in pipe.manifest.components:
            pipe.session(name)

    model = pipe_a.manifest.model
    factor, channels = model.vae_scale_factor, model.latent_channels
    schedule = pipe_a.sampler.schedule(steps)
    # DiT probes: the first step (pure noise) and a middle one (partly denoised latents).
    probe_steps = sorted({0, steps // 2})
    records = []
    for i, prompt in enumerate(prompts):
        rng = np.random.default_rng(seed + i)
        shape = (1, channels, size // factor, size // factor)
        noise = rng.standard_normal(shape, dtype=np.float32)
        step_noise = rng.standard_normal((schedule.noisy_steps, *shape), dtype=np.float32) if schedule.noisy_steps else None
        # Alternate which export runs first, so warm caches do not always favour the same one.
        order = (pipe_a, pipe_b) if i % 2 == 0 else (pipe_b, pipe_a)
        runs = {id(p): _timed_generate(p, prompt, noise, size, steps, guidance_scale, step_noise) for p in order}
        image_a, latents_a, seconds_a, final_a = runs[id(pipe_a)]
        image_b, latents_b, seconds_b, _ = runs[id(pipe_b)]

        embeds, mask = pipe_a.encode_prompts(prompt, pipe_a.sampler.negative("", guidance_scale))
        transformer_cosines = {}
        for step in probe_steps:
            # the sample entering `step`; the same inputs for both (A's caption embeddings), each
            # export's own transformer graph(s)
            step_input = pipe_a.sampler.initial(noise, None, schedule) if step == 0 else latents_a[step - 1]
            outputs = [p.sampler.predict(step_input, embeds, mask, schedule, step, guidance_scale) for p in (pipe_a, pipe_b)]
            transformer_cosines[str(step + 1)] = cosine(*outputs)  # 1-based, as on_step counts

        step_sqnr = [sqnr_db(a, b) for a, b in zip(latents_a, latents_b)]
        record = {
            "prompt": prompt,
            "noise_seed": seed + i,
            "text_encoder_cosine": _text_encoder_cosine(pipe_a, pipe_b, prompt),
            "transformer_cosine": min(transformer_cosines.values()),
            "transformer_cosine_by_step": transformer_cosines,
            "decoder_cosine": cosine(pipe_a.decode(final_a), pipe_b.decode(final_a)),
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
            "precision_a": _label(pipe_a.manifest), "precision_b": _label(pipe_b.manifest),
            "size": size, "steps": steps, "guidance_scale": guidance_scale, "seed": seed,
            "sampler": pipe_a.manifest.model.pipeline,
            "negative_prompt": "", "transformer_probe_steps": [s + 1 for s in probe_steps], "prompts": prompts,
        },
        "prompts": records,
        "summary": summary,
    }


def _mean(values: list[float]) -> float:
    return math.inf if math.inf in values else float(np.mean(values))


# -- output ----------------------------------------------------------------------------------


def write_result_json(path: Path, result: dict) -> None:
    """Strict JSON (inf as "inf"), written atomically."""
    write_json_atomic(path, json_safe(result))


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
