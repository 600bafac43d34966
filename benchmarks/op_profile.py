"""Where a denoising step's time goes: ONNX Runtime's profiler over one component of an export,
per operator type, with the Q/DQ and layout ops that quantization added counted apart.

    python -m benchmarks.op_profile EXPORT [EXPORT ...] [--component transformer_step]
        [--size 512] [--runs 5] [--threads 0]

Each export's graph runs `--runs` times (after one warm-up) on the declared sample inputs at
`--size` px; the profiler's per-node durations are summed per op type and divided by the runs.
Writes benchmarks/results/op_profile.json and op_profile.md (top 10 op types per export, and
the share of QuantizeLinear / DequantizeLinear / Transpose / Reshape-like ops).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
# Ops that move or re-encode data instead of computing: what issue 13 asks to remove.
OVERHEAD_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Transpose", "Reshape",
                "Cast", "Concat", "Split", "Slice", "Unsqueeze", "Squeeze", "Expand"}


def component_feeds(export: Path, component: str, size: int) -> tuple:
    """(manifest, the declared sample inputs of `component` at `size` px, batch 2 as with CFG)."""
    from sana_edge.components import COMPONENTS, sample_inputs
    from sana_edge.manifest import load_manifest

    manifest = load_manifest(export)
    spec = COMPONENTS[component]
    latent = size // manifest.model.vae_scale_factor
    dims = {**manifest.model.dims(), "latent_height": latent, "latent_width": latent, "batch": 2,
            "caption_length": manifest.model.max_sequence_length, "sequence": manifest.model.max_sequence_length}
    return manifest, sample_inputs(spec, dims, seed=0)


def interleaved_walls(exports: list[Path], component: str, size: int, runs: int, threads: int) -> list[float]:
    """Median wall ms per export, runs interleaved (A, B, A, B, ...) so machine load hits all alike."""
    import onnxruntime as ort

    loaded = []
    for export in exports:
        manifest, feeds = component_feeds(export, component, size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(manifest.component_path(component)), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, feeds)  # warm-up
        loaded.append((session, feeds))
    walls: list[list[float]] = [[] for _ in loaded]
    for _ in range(runs):
        for index, (session, feeds) in enumerate(loaded):
            start = time.perf_counter()
            session.run(None, feeds)
            walls[index].append(time.perf_counter() - start)
    return [round(statistics.median(w) * 1000, 1) for w in walls]


def profile_component(export: Path, component: str, size: int, runs: int, threads: int) -> dict:
    import onnxruntime as ort

    manifest, feeds = component_feeds(export, component, size)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(manifest.component_path(component)), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, feeds)  # warm-up, also profiled: dropped below by run index
        walls = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feeds)
            walls.append(time.perf_counter() - start)
        events = json.loads(Path(session.end_profiling()).read_text())
    return {"median_wall_ms": round(statistics.median(walls) * 1000, 1), **summarise(events, runs)}


def summarise(events: list[dict], runs: int) -> dict:
    """Per-op-type milliseconds per run, from the profiler's node events of the last `runs` runs."""
    model_runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = sorted(model_runs, key=lambda e: e["ts"])[-runs]["ts"] if len(model_runs) >= runs else 0
    per_op: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < start:
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op[op] += event["dur"] / 1000 / runs
        counts[op] += 1
    total = sum(per_op.values())
    table = sorted(({"op": op, "ms": round(ms, 3), "share": round(ms / total, 4) if total else 0.0,
                     "nodes": counts[op] // runs} for op, ms in per_op.items()), key=lambda r: -r["ms"])
    overhead = sum(r["ms"] for r in table if r["op"] in OVERHEAD_OPS)
    return {"total_ms": round(total, 2), "overhead_ms": round(overhead, 2),
            "overhead_share": round(overhead / total, 4) if total else 0.0, "ops": table}


def markdown(result: dict) -> str:
    lines = [f"# {result['component']} op profile at {result['size']} px (batch 2, CFG)", "",
             f"CPU: {result['machine']['cpu']} ({result['machine']['isa']}), ONNX Runtime "
             f"{result['onnxruntime']}, {result['runs']} profiled runs after a warm-up, kernel time per run; "
             f"1-minute load average {result['machine']['load_average_1m']} (other work on the machine inflates "
             "every op alike).", ""]
    first = next(iter(result["exports"].values()))["interleaved_median_ms"]
    lines += ["Without the profiler, runs interleaved across exports: " + ", ".join(
        f"{name} {p['interleaved_median_ms']:.0f} ms ({p['interleaved_median_ms'] / first:.2f}x)"
        for name, p in result["exports"].items()) + ".", ""]
    for name, profile in result["exports"].items():
        lines += [f"## {name}: median {profile['median_wall_ms']:.0f} ms per step, {profile['total_ms']:.0f} ms of kernel time; Q/DQ, layout and copy ops "
                  f"{profile['overhead_ms']:.0f} ms ({profile['overhead_share']:.0%})", "",
                  "| op | ms | share | nodes |", "|---|---:|---:|---:|"]
        lines += [f"| {r['op']} | {r['ms']:.1f} | {r['share']:.1%} | {r['nodes']} |" for r in profile["ops"][:10]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    import onnxruntime as ort

    from benchmarks.bench_machine import cpu_isa, cpu_model, load_average, write_json_and_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--component", default="transformer_step")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    exports = {}
    for export in args.exports:
        from sana_edge.manifest import load_manifest

        label = f"{export.name} ({load_manifest(export).precision})"
        exports[label] = profile_component(export, args.component, args.size, args.runs, args.threads)
        print(f"{label}: {exports[label]['total_ms']:.0f} ms", flush=True)
    medians = interleaved_walls(args.exports, args.component, args.size, args.runs, args.threads)
    for (label, profile), median in zip(exports.items(), medians):
        profile["interleaved_median_ms"] = median
    result = {"component": args.component, "size": args.size, "runs": args.runs, "onnxruntime": ort.__version__,
              "machine": {"cpu": cpu_model(), "isa": cpu_isa(), "load_average_1m": load_average()},
              "exports": exports}
    write_json_and_markdown(args.out, "op_profile", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
