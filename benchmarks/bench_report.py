"""Figures -> summary (totals, ratios against the baseline, compute floors), markdown, PNG plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from .bench_cached_path import markdown_cached

STAGE_LABELS = {"text_encoder": "text enc.", "step": "1 step", "decode": "decode"}


def spread(times: list[float]) -> dict:
    """Median, min, max and the quartiles (inclusive method: defined from 2 samples on)."""
    ordered = sorted(times)
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else (ordered[0],) * 3
    return {"median_s": statistics.median(ordered), "min_s": ordered[0], "max_s": ordered[-1], "q1_s": q1, "q3_s": q3}


def add_floors(entry: dict, flops: float | None, rates: dict) -> None:
    """floor = FLOPs / the machine's best measured fp32 GEMM rate; x_from_floor = median / floor.
    int8/int4 graphs can beat the fp32 floor, so they also get the int8 GEMM rate's floor."""
    entry["flops"] = flops
    fp32 = rates.get("fp32_gflops")
    if not flops or not fp32 or entry.get("median_s") is None:
        entry.update(floor_s=None, x_from_floor=None)
        return
    entry["floor_s"] = flops / (fp32 * 1e9)
    entry["x_from_floor"] = entry["median_s"] / entry["floor_s"]
    if rates.get("ort_int8_gops") and entry["backend"].endswith(("int8", "int4")):
        entry["floor_int8_s"] = flops / (rates["ort_int8_gops"] * 1e9)


def step_counts(settings: dict) -> tuple[list[int], int]:
    """(every step count a total is given for, the headline one): Sana [20], 20; Sana-Sprint
    [1, 2, 4], 2. Older results hold one int."""
    steps = settings["steps"]
    counts = list(steps) if isinstance(steps, list) else [steps]
    return counts, settings.get("primary_steps", counts[0])


def measurement_index(result: dict) -> dict:
    return {(m["stage"], m["size"], m["backend"]): m for m in result["measurements"]}


def stage_entries(index: dict, stages, size: int, backend: str, once: str) -> dict:
    """{stage: its measurement (or None)} for one size and backend from `measurement_index`;
    `once` is the size-independent stage (text encoding, the cached prompt), measured once and
    counted at every size."""
    return {s: index.get((s, None if s == once else size, backend)) for s in stages}


def summarize(result: dict) -> dict:
    """Per size and backend: stage medians, the totals (text encoding + N steps + decode; the
    headline N first: 20 for Sana, 2 for Sprint), speedups against the baseline, peak memory and
    distance from the floor. A size-independent stage (text encoding) is measured once and
    counted at every size."""
    counts, steps = step_counts(result["settings"])
    baseline = result["baseline"]
    index, summary = measurement_index(result), {}
    for size in result["settings"]["sizes"]:
        rows = {}
        for backend in result["backends"]:
            stages = stage_entries(index, STAGE_LABELS, size, backend, once="text_encoder")
            medians = {s: (m or {}).get("median_s") for s, m in stages.items()}
            row = {f"{s}_s": v for s, v in medians.items()}
            complete = all(v is not None for v in medians.values())
            row["totals_s"] = {str(n): medians["text_encoder"] + n * medians["step"] + medians["decode"] if complete else None
                               for n in counts}
            row["total_s"] = row["totals_s"][str(steps)]
            row["peak_rss_mb"] = {s: (m or {}).get("peak_rss_mb") for s, m in stages.items()}
            loads = [v for m in stages.values() for v in ((m or {}).get("load_avg") or []) if v is not None]
            row["load_avg_max"] = max(loads) if loads else None
            row["x_from_floor"] = {s: (m or {}).get("x_from_floor") for s, m in stages.items()}
            if complete:
                parts = {"text_encoder": medians["text_encoder"], f"{steps}_steps": steps * medians["step"], "decode": medians["decode"]}
                row["share"] = {k: v / row["total_s"] for k, v in parts.items()}
                row["dominant_stage"] = max(parts, key=parts.get)
            rows[backend] = row
        base = rows.get(baseline, {})
        for row in rows.values():
            row["speedup_vs_baseline"] = {
                key: (base[f"{key}_s"] / row[f"{key}_s"]) if base.get(f"{key}_s") and row.get(f"{key}_s") else None
                for key in ("text_encoder", "step", "decode", "total")
            }
            row["total_speedup_vs_baseline"] = {
                n: (base["totals_s"][n] / t) if t and (base.get("totals_s") or {}).get(n) else None
                for n, t in row["totals_s"].items()
            }
        summary[str(size)] = rows
    return summary


def _fmt(seconds, ratio=None) -> str:
    if seconds is None:
        return "failed"
    text = f"{seconds:.3g}" if seconds < 100 else f"{seconds:.0f}"
    return text if ratio is None else f"{text} ({ratio:.2f}x)"


def _bf16_lines(result: dict) -> list[str]:
    """torch-bf16 rows are measured on every CPU; say when this one has no bf16 instructions."""
    if not any("bf16" in b and "cuda" not in b for b in result["backends"]):
        return []
    native = result["machine"].get("bf16_native")
    if native is None:
        return []
    return ["", "torch-bf16 ran on a CPU " + ("with bf16 instructions (AVX-512 BF16 / AMX-BF16)." if native else
            "**without bf16 instructions** (no AVX-512 BF16 / AMX-BF16): oneDNN converts to fp32 around each "
            "op, so this row is what a torch user picking bf16 gets here, not bf16 at native speed.")]


def markdown(result: dict) -> str:
    s, m = result["settings"], result["machine"]
    rates = result["matmul_rate"]
    counts, steps = step_counts(s)
    sprint = s.get("sampler") == "sprint"
    batch_words = ("batch 1 (Sana-Sprint: no negative prompt" if sprint else "batch 2 (prompt + negative")
    step_words = ("batch 1 with the guidance input (Sana-Sprint, no CFG)" if sprint else "batch 2 (CFG)")
    isa = m.get("isa") or "unknown"
    isa = isa if isinstance(isa, str) else ", ".join(f.upper() for f in isa)  # older results: a list
    lines = [
        f"# SANA latency per stage: {result['model']}, {m['cpu']}, {m['threads']} threads",
        "",
        f"CPU ISA: {isa}. Load avg (max): the highest 1-minute load average seen while that row's stages ran "
        f"(this machine is shared; {m['cores']} cores).",
        "",
        f"Random weights, real architectures. Text encoding: Gemma-2, {s['caption_tokens']} tokens, {batch_words}; "
        f"measured once, size-independent). Step: one DiT forward, {step_words}. Decode: DC-AE, batch 1. "
        f"Total = text enc. + N x step + decode (N = {', '.join(map(str, counts))}). Median of {s['repeats']} runs "
        f"after {s['warmup']} warm-up, baseline and candidates interleaved; (Nx) = speedup vs `{result['baseline']}` "
        f"(the diffusers modules, eager, as its pipeline runs them).",
        "",
        f"Matmul rate measured in this run: numpy {rates.get('numpy_fp32_gflops', 0):.0f}, torch "
        f"{rates.get('torch_fp32_gflops') or 0:.0f}, onnxruntime {rates.get('ort_fp32_gflops') or 0:.0f} GFLOP/s fp32; "
        f"onnxruntime int8 {rates.get('ort_int8_gops') or 0:.0f} GOP/s. Floor = FLOPs / {rates['fp32_gflops']:.0f} GFLOP/s.",
    ]
    for size, rows in result["summary"].items():
        others = [n for n in counts if n != steps]
        extra_heads = "".join(f" total {n} steps (s) |" for n in others)
        lines += ["", f"## {size} px", "",
                  f"| backend | text enc. (s) | step (s) | decode (s) | total {steps} steps (s) |{extra_heads} "
                  "peak RSS te / step / decode (GB) | x from fp32 floor te / step / decode | load avg (max) |",
                  "|---|---|---|---|---|" + "---|" * len(others) + "---|---|---|"]
        for backend, row in rows.items():
            up = row["speedup_vs_baseline"]
            rss = " / ".join("-" if v is None else f"{v / 1024:.1f}" for v in row["peak_rss_mb"].values())
            floor = " / ".join("-" if v is None else f"{v:.1f}" for v in row["x_from_floor"].values())
            totals = row.get("totals_s") or {}
            ups = row.get("total_speedup_vs_baseline") or {}
            extra = "".join(f" {_fmt(totals.get(str(n)), ups.get(str(n)))} |" for n in others)
            load = "-" if row.get("load_avg_max") is None else f"{row['load_avg_max']:.1f}"
            lines.append(f"| {backend} | {_fmt(row['text_encoder_s'], up['text_encoder'])} | {_fmt(row['step_s'], up['step'])} | "
                         f"{_fmt(row['decode_s'], up['decode'])} | **{_fmt(row['total_s'], up['total'])}** |{extra} {rss} | "
                         f"{floor} | {load} |")
        flops = result["flops"]
        if flops.get("step"):
            floor = lambda f: f"{f / 1e9:.4g} GFLOP ({1000 * f / (rates['fp32_gflops'] * 1e9):.3g} ms)"  # noqa: E731
            lines += ["", f"FLOPs (floor): text enc. {floor(flops['text_encoder'])}, step {floor(flops['step'][size])}, "
                          f"decode {floor(flops['decode'][size])}."]
        base = rows.get(result["baseline"], {})
        if base.get("dominant_stage"):
            shares = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in base["share"].items())
            lines.append(f"Dominant stage ({result['baseline']}): **{base['dominant_stage'].replace('_', ' ')}** ({shares}).")
    lines += _bf16_lines(result)
    lines += markdown_cached(result)
    lines += _runtime_precision_lines(result)
    shared = sorted({f"{e['backend']} {e['stage']} = {e['shared_with']}" for e in result["measurements"] if e.get("shared_with")})
    if shared:
        lines += ["", "Same graph, measured once: " + "; ".join(shared) + " (the int8/int4 recipes keep the decoder fp32)."]
    errors = [f"{e['backend']} {e['stage']} {e['size'] or ''}: {e['error']}" for e in result["measurements"] if e.get("error")]
    if errors:
        lines += ["", "Failed: " + "; ".join(errors)]
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}.",
              f"Command: `{result['command']}` ({result['duration_s']:.0f} s).", ""]
    return "\n".join(lines)


def _runtime_precision_lines(result: dict) -> list[str]:
    """What OpenVINO actually executed: matmul-like layers per runtime precision, per stage (at the
    largest size; the graph is the same at every size)."""
    largest = max(result["settings"]["sizes"])
    rows = [f"{e['backend']} {e['stage']}: " + ", ".join(f"{k} x{v}" for k, v in e["runtime_precisions"].items())
            for e in result["measurements"]
            if e.get("runtime_precisions") and not e.get("shared_with") and e["size"] in (None, largest)]
    if not rows:
        return []
    return ["", "OpenVINO runtime precision of the matmul-like layers (from the compiled model): " + "; ".join(rows) + "."]


def plot(result: dict, path: Path) -> None:
    """Latency vs resolution per backend (log-log): one panel per stage and the 20-step total."""
    import matplotlib

    matplotlib.use("Agg")  # headless: CI and servers have no display
    import matplotlib.pyplot as plt

    sizes = [int(s) for s in result["summary"]]
    panels = [("step_s", "one denoising step"), ("decode_s", "decode"),
              ("total_s", f"total, {step_counts(result['settings'])[1]} steps")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (key, title) in zip(axes, panels):
        for backend in result["backends"]:
            points = [(s, result["summary"][str(s)][backend].get(key)) for s in sizes]
            points = [(s, v) for s, v in points if v]
            if points:
                ax.plot(*zip(*points), marker="o", label=backend, linestyle="--" if backend == result["baseline"] else "-")
        ax.set(xscale="log", yscale="log", title=title, xlabel="resolution (px)", ylabel="seconds")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(f"{result['model']} on {result['machine']['cpu']} ({result['machine']['threads']} threads)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
