"""sana-edge's own path through a generation, as `benchmarks.latency` measures it beside the
diffusers-shaped stages (issue 13: stop recomputing what does not change).

The diffusers-shaped stages (`text_encoder`, `step`, `decode`) run what diffusers runs: the whole
padded instruction + prompt sequence (and the negative prompt) through Gemma-2, and the single
transformer graph at every step. sana-edge's runtime does less, exactly:
- `prompt`: only the prompt's own tokens, on top of the instruction prefix's K/V stored in the
  export (batch 1; the default negative prompt "" is a constant of the export);
- `caption_kv`: the caption's cross-attention K/V of every block, once per generation;
- `step_split`: the step graph that reads those K/V.
Total = prompt + caption_kv + N x step_split + decode. The decode stage is the same graph on both
paths. Sana-Sprint exports keep the single transformer graph (guidance embedding: the split does
not cover it, export/prepare.py), so their cached path is the prompt stage alone, and their total
uses the single graph's step. No Gemma tokenizer can be downloaded, so ids are synthetic: an instruction of 230 tokens
(as benchmarks.text_encoder_latency) and a 20-token prompt; cost does not depend on id values.
"""

from __future__ import annotations

import numpy as np

CACHED_STAGES = ("prompt", "caption_kv", "step_split")
STAGE_COMPONENT = {"prompt": "text_encoder", "caption_kv": "caption_kv", "step_split": "transformer_step"}
# Runtimes that run sana-edge's graphs through its own path (diffusers / optimum have no such path).
CACHED_RUNTIMES = ("ort",)
INSTRUCTION_TOKENS = 230  # the instruction prefix less the token that merges with the prompt's first
PROMPT_TOKENS = 20


def cached_stages(model: str) -> tuple[str, ...]:
    """The cached-path stages this model's export runs (Sprint: no split transformer)."""
    from .bench_models import is_sprint

    return CACHED_STAGES[:1] if is_sprint(model) else CACHED_STAGES


def transformer_dims(transformer: dict) -> dict:
    """The split graphs' K/V axes from a SanaTransformer2DModel config."""
    return {"transformer_layers": transformer["num_layers"],
            "cross_attention_heads": transformer["num_cross_attention_heads"],
            "cross_attention_head_dim": transformer["cross_attention_head_dim"]}


def cached_inputs(model: str, stage: str, size: int | None) -> dict[str, np.ndarray]:
    """Deterministic feeds of one cached-path stage, named as the declarations name them."""
    from .bench_models import CAPTION_TOKENS, batch, component_spec, model_dims, stage_inputs

    rng = np.random.default_rng(1)
    dims = model_dims(model)
    spec = component_spec(STAGE_COMPONENT[stage], model)
    if stage == "prompt":
        bound = {**dims, "batch": 1, "sequence": PROMPT_TOKENS, "past_sequence": INSTRUCTION_TOKENS,
                 "total_sequence": INSTRUCTION_TOKENS + PROMPT_TOKENS}
        feeds = {"input_ids": rng.integers(4, dims["vocab_size"], (1, PROMPT_TOKENS), dtype=np.int64),
                 "attention_mask": np.ones((1, bound["total_sequence"]), np.int64)}
        for tensor in spec.inputs[2:]:  # the prefix's past K/V
            feeds[tensor.name] = rng.standard_normal(spec.shape(tensor, bound)).astype(np.float32)
        return feeds
    step = stage_inputs(model, "step", size or 512)
    if stage == "caption_kv":
        return {"encoder_hidden_states": step["encoder_hidden_states"]}
    bound = {**dims, "batch": batch(model), "caption_length": CAPTION_TOKENS}
    feeds = {k: v for k, v in step.items() if k != "encoder_hidden_states"}
    for name in ("caption_keys", "caption_values"):
        tensor = next(t for t in spec.inputs if t.name == name)
        feeds[name] = rng.standard_normal(spec.shape(tensor, bound)).astype(np.float32)
    return feeds


def summarize_cached(result: dict) -> dict:
    """Per size, per backend that ran the cached stages: their medians, the totals and the speedup
    of each total against the baseline's diffusers-path total of the same step count."""
    from .bench_models import is_sprint
    from .bench_report import measurement_index, stage_entries, step_counts

    counts, _ = step_counts(result["settings"])
    single = is_sprint(result["model"])  # the single transformer graph is the step, no caption K/V stage
    index, summary = measurement_index(result), {}
    for size in result["settings"]["sizes"]:
        rows = {}
        for backend in result["backends"]:
            stages = stage_entries(index, (*CACHED_STAGES, "decode"), size, backend, once="prompt")
            if single:
                step = stage_entries(index, ("step",), size, backend, once="prompt")["step"]
                stages.update(caption_kv={"median_s": 0.0}, step_split=step)
            medians = {s: (m or {}).get("median_s") for s, m in stages.items()}
            if medians["prompt"] is None:
                continue
            complete = all(v is not None for v in medians.values())
            base = result["summary"][str(size)].get(result["baseline"], {}).get("totals_s", {})
            totals = {str(n): medians["prompt"] + medians["caption_kv"] + n * medians["step_split"] + medians["decode"]
                      if complete else None for n in counts}
            rows[backend] = {
                **{f"{s}_s": v for s, v in medians.items()}, "totals_s": totals,
                "speedup_vs_baseline": {n: base[n] / t if t and base.get(n) else None for n, t in totals.items()},
                "cold_s": {s: (m or {}).get("cold_s") for s, m in stages.items()},
                "recold_s": {s: (m or {}).get("recold_s") for s, m in stages.items()},
                "peak_rss_mb": {s: (m or {}).get("peak_rss_mb") for s, m in stages.items()},
            }
        if rows:
            summary[str(size)] = rows
    return summary


def _s(value) -> str:
    return "-" if value is None else (f"{value:.3g}" if value < 100 else f"{value:.0f}")


def markdown_cached(result: dict) -> list[str]:
    """The cached-path tables (empty when no backend ran them)."""
    from .bench_report import step_counts

    from .bench_models import is_sprint

    cached = result.get("cached_summary") or {}
    if not cached:
        return []
    counts, _ = step_counts(result["settings"])
    lines = ["", "## sana-edge's path: prompt after the cached instruction, caption K/V once, split step", "",
             f"Prompt: {PROMPT_TOKENS} tokens after the {INSTRUCTION_TOKENS}-token instruction's stored K/V, batch 1 "
             "(the negative prompt \"\" is a constant of the export). Caption K/V: once per image. Total = prompt + "
             "caption K/V + N x step + decode; (Nx) = against the baseline's diffusers-path total. Cold: process start "
             "to the stage's first output in a fresh worker (interpreter, imports, session creation, first run); "
             "re-cold: the same again later in the run, when the optimized graph is in the ORT cache."]
    if is_sprint(result["model"]):
        lines[-1] += (" Sana-Sprint exports keep the single transformer graph (no caption K/V stage): its step is the "
                      "diffusers-path step above.")
    for size, rows in cached.items():
        heads = "".join(f" total {n} steps (s) |" for n in counts)
        lines += ["", f"### {size} px", "",
                  f"| backend | prompt (s) | caption K/V (s) | step (s) | decode (s) |{heads} cold prompt / caption / step / "
                  "decode (s) | re-cold (s) | peak RSS prompt / caption / step / decode (GB) |",
                  "|---|---|---|---|---|" + "---|" * len(counts) + "---|---|---|"]
        for backend, row in rows.items():
            totals = "".join(f" **{_s(row['totals_s'][str(n)])}**" + (
                f" ({row['speedup_vs_baseline'][str(n)]:.2f}x) |" if row["speedup_vs_baseline"][str(n)] else " |")
                for n in counts)
            cold = " / ".join(_s(v) for v in row["cold_s"].values())
            recold = " / ".join(_s(v) for v in row["recold_s"].values())
            rss = " / ".join("-" if v is None else f"{v / 1024:.1f}" for v in row["peak_rss_mb"].values())
            lines.append(f"| {backend} | {_s(row['prompt_s'])} | {_s(row['caption_kv_s'])} | {_s(row['step_split_s'])} | "
                         f"{_s(row['decode_s'])} |{totals} {cold} | {recold} | {rss} |")
    return lines
