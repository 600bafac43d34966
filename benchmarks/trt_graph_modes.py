"""Which CUDA-graph mode is fastest for TensorRT engines on this GPU: TensorRT-RTX's built-in
whole-graph capture, sana-edge's own capture (kernels specialised eagerly), or none. Needs an
NVIDIA GPU that can run the export's engines; elsewhere it exits with the reason.

    python -m benchmarks.trt_graph_modes EXPORT_DIR [--size 1024] [--steps 20] [--repeats 5]

All three pipelines stay loaded and take turns (order rotated each round), so drift hits each
alike. Per mode: median denoising ms/step and median whole-image seconds, and the ratio to "off".
Writes benchmarks/results/trt_graph_modes-<gpu>.json and .md.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODES = ("builtin", "manual", "off")


def main(argv=None) -> dict:
    from sana_edge.backends import tensorrt_problem
    from sana_edge.fileio import write_json_atomic, write_text_atomic
    from sana_edge.manifest import load_manifest
    from sana_edge.pipeline import SanaEdgePipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    problem = tensorrt_problem(load_manifest(args.export, verify=False))
    if problem is not None:
        sys.exit(f"error: cannot run TensorRT engines here: {problem}")
    pipes = {m: SanaEdgePipeline.from_export(args.export, backend="tensorrt", graphs=m, keep_loaded=True) for m in MODES}
    run = dict(prompt="a red fox in the snow", height=args.size, width=args.size, steps=args.steps, seed=0)
    for pipe in pipes.values():
        pipe.generate(**run)  # warm-up: kernels compiled and graphs captured
    step_ms, image_s = {m: [] for m in MODES}, {m: [] for m in MODES}
    for round_index in range(args.repeats):
        for mode in MODES[round_index % 3:] + MODES[: round_index % 3]:
            result = pipes[mode].generate(**run)
            step_ms[mode].append(1000 * result.timings["denoise"] / args.steps)
            image_s[mode].append(sum(result.timings.values()))
    device = pipes["off"].backend.describe()
    medians = {m: {"step_ms": statistics.median(step_ms[m]), "image_s": statistics.median(image_s[m])} for m in MODES}
    for m in MODES:
        medians[m]["step_vs_off"] = medians[m]["step_ms"] / medians["off"]["step_ms"]
    result = {"device": device, "settings": vars(args) | {"export": str(args.export), "out": str(args.out)},
              "step_ms": step_ms, "image_s": image_s, "median": medians}
    stem = "trt_graph_modes-" + re.sub(r"[^a-z0-9]+", "-", device.split(" on ")[-1].lower()).strip("-")[:40]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"{stem}.json", result)
    rows = [f"| {m} | {medians[m]['step_ms']:.1f} | {medians[m]['step_vs_off']:.2f}x | {medians[m]['image_s']:.2f} |"
            for m in MODES]
    write_text_atomic(args.out / f"{stem}.md", "\n".join([
        f"# CUDA graph modes: {device}", "",
        f"`python -m benchmarks.trt_graph_modes {args.export} --size {args.size} --steps {args.steps} "
        f"--repeats {args.repeats}` ({args.repeats} interleaved rounds, medians)", "",
        "| mode | denoise ms/step | vs off | image s |", "|---|---|---|---|", *rows, ""]))
    print("\n".join(rows))
    return result


if __name__ == "__main__":
    main()
