"""Peak memory of full-size SANA (random weights) on ONNX Runtime CPU, with and without the
memory planner: a 1024 px run, and a 4096 px DC-AE decode.

    python -m benchmarks.memory_plan [--steps 2] [--cases run1024_planner,...]

Each case runs in a fresh subprocess and reports its kernel-measured peak RSS (VmHWM), so one
case's allocations never count toward another's. Peak memory does not depend on the number of
denoising steps (every step reuses the same buffers), so the 1024 px run uses --steps 2.
The export folder is assembled from `benchmarks.bench_exports`' cached fp32 graphs (Sana-0.6B,
DC-AE f32c32, Gemma-2-2B) with the tiny checkpoint's tokenizer: the tokenizer decides token ids,
not tensor sizes (the text encoder still sees the instruction + 300 tokens).

Writes benchmarks/results/memory.json and memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

GiB = 1 << 30
EXPORT = Path("build/bench-memory/sana-0.6b-fp32")
RESULTS = Path("benchmarks/results")
UNTILED_CAP = 20 * GiB  # address-space cap for the case expected to exceed this 24 GiB machine
CASES = ("run1024_planner", "run1024_keep_loaded", "decode1536_arena", "decode1536", "decode4096_planner_12gb",
         "decode4096_untiled")


def assemble_export(out: Path = EXPORT) -> Path:
    """A sana-edge export folder over the cached full-size fp32 graphs (linked, not copied)."""
    from sana_edge.components import COMPONENTS
    from sana_edge.export import configs
    from sana_edge.export.tiny import write_tiny_checkpoint
    from sana_edge.manifest import MANIFEST_NAME, ModelValues, write_manifest

    from .bench_exports import DEFAULT_CACHE, ensure_graphs

    if (out / MANIFEST_NAME).is_file():
        return out
    tiny = Path("build/bench-memory/tiny-checkpoint")
    if not (tiny / "model_index.json").is_file():
        write_tiny_checkpoint(tiny, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    components = {}
    for name in COMPONENTS:
        graph = Path(ensure_graphs("sana-0.6b", name, ["fp32"], DEFAULT_CACHE)["fp32"])
        size = 0
        for source in graph.parent.glob(graph.name + "*"):
            target = out / source.name
            if not target.exists():  # a hard link: exports refuse symlinks that leave the folder
                os.link(source.resolve(), target)
            size += source.stat().st_size
        components[name] = {"file": graph.name, "sha256": "not-verified", "bytes": size}
    for folder in ("tokenizer", "scheduler"):
        target = out / folder
        if not target.exists():
            shutil.copytree(tiny / folder, target)
    dit, vae, gemma = configs.SANA_600M_TRANSFORMER, configs.DCAE_F32C32, configs.GEMMA2_2B
    from diffusers import SanaPipeline

    from sana_edge.export.checkpoint import default_complex_human_instruction

    model = ModelValues(
        latent_channels=32, out_channels=32, caption_channels=gemma["hidden_size"],
        vocab_size=gemma["vocab_size"], vae_scale_factor=32, vae_scaling_factor=vae["scaling_factor"],
        sample_size=32, timestep_scale=1.0, flow_shift=3.0, max_sequence_length=300,
        complex_human_instruction=tuple(default_complex_human_instruction(SanaPipeline)),
        decoder_block_out_channels=tuple(vae["decoder_block_out_channels"]),
        transformer_inner_dim=dit["num_attention_heads"] * dit["attention_head_dim"], mlp_ratio=dit["mlp_ratio"],
    )
    # run with verify=False: the graphs are links into the benchmark cache, not hashed copies
    files = {f"{folder}/{p.name}": "not-verified" for folder in ("tokenizer", "scheduler")
             for p in (out / folder).iterdir()}
    write_manifest(out, {"precision": "fp32", "model": model.to_dict(), "components": components, "files": files,
                         "tokenizer": "tokenizer/tokenizer.json", "scheduler_config": "scheduler/scheduler_config.json"})
    return out


def run_case(case: str, steps: int) -> dict:
    """One measurement, in this (fresh) process."""
    import numpy as np

    from sana_edge.memory import GiB as _GiB
    from sana_edge.pipeline import SanaEdgePipeline

    result: dict = {"case": case}
    start = time.perf_counter()
    if case.startswith("run1024"):
        pipe = SanaEdgePipeline.from_export(EXPORT, verify=False, keep_loaded=case.endswith("keep_loaded"))
        out = pipe.generate("a red fox in the snow", height=1024, width=1024, steps=steps, seed=0)
        result.update(stage_peak_bytes=out.memory, plan=out.plan.describe(), keep_loaded=out.plan.keep_loaded,
                      estimated_stage_bytes=out.plan.stage_bytes, timings=out.timings)
    elif case.startswith("decode1536"):
        # One 1536 px decode (a tile the 12 GiB plan picks for 4096 px): measured peak against the
        # planner's estimate, with the tiled path's session (no CPU arena) and with the arena.
        pipe = SanaEdgePipeline.from_export(EXPORT, verify=False)
        estimate = pipe.plan(1536, 1536).stage_bytes["vae_decoder"]
        latents = np.random.default_rng(0).standard_normal((1, 32, 48, 48)).astype(np.float32)
        session = pipe.session("vae_decoder", low_memory=not case.endswith("arena"))
        image = session.run({"latent": latents})["image"]
        result.update(estimated_decoder_bytes=estimate, decoder_tile_px=1536, finite=bool(np.isfinite(image).all()))
    else:
        # 12 GiB: what a 16 GB laptop can give; the fp32 Gemma-2-2B alone needs ~11.4 GiB, so the
        # planner must fit the 4096 px decode next to that budget by tiling.
        budget = 12 * _GiB if "planner" in case else None
        pipe = SanaEdgePipeline.from_export(EXPORT, verify=False, max_memory=budget)
        latents = np.random.default_rng(0).standard_normal((1, 32, 128, 128)).astype(np.float32)
        tile = None
        if budget is not None:
            plan = pipe.plan(4096, 4096)
            tile = plan.decoder_tile
            result.update(plan=plan.describe(), estimated_decoder_bytes=plan.stage_bytes["vae_decoder"])
        image = pipe.decode(latents, tile=tile)
        result.update(decoder_tile_px=tile * 32 if tile else None, finite=bool(np.isfinite(image).all()))
    result["seconds"] = round(time.perf_counter() - start, 1)
    # The pipeline resets the kernel's high-water mark per stage (sana_edge.memory), so the
    # process peak is the largest stage peak, not ru_maxrss (which then holds the last stage's).
    peaks = list((result.get("stage_peak_bytes") or {}).values())
    result["peak_rss_bytes"] = max(peaks + [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024])
    return result


def measure(case: str, steps: int) -> dict:
    limit = UNTILED_CAP if case == "decode4096_untiled" else None

    def cap():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_plan", "--case", case, "--steps", str(steps)],
                          capture_output=True, text=True, preexec_fn=cap)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        return {"case": case, "failed": True, "cap_bytes": limit, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def merge_previous(results: list[dict]) -> list[dict]:
    """Cases not re-run this time keep their last committed result (the 4096 px decode takes
    half an hour on 2 cores; `--cases` re-measures only what changed)."""
    path = RESULTS / "memory.json"
    previous = {r["case"]: r for r in json.loads(path.read_text())["results"]} if path.is_file() else {}
    previous.update({r["case"]: r for r in results})
    return [previous[c] for c in CASES if c in previous]


def write_report(results: list[dict], steps: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = merge_previous(results)
    data = {"command": "python -m benchmarks.memory_plan " + " ".join(sys.argv[1:]), "machine": platform.processor()
            or platform.machine(), "cpus": os.cpu_count(), "steps": steps, "results": results}
    (RESULTS / "memory.json").write_text(json.dumps(data, indent=2, default=str))
    lines = ["# Peak memory, full-size SANA-0.6B + DC-AE f32c32 + Gemma-2-2B (fp32, random weights), ONNX Runtime CPU", "",
             "| case | peak RSS | decoder tile | time (s) | note |", "|---|---|---|---|---|"]
    for r in results:
        if r.get("failed") and not r.get("cap_bytes"):
            lines.append(f"| {r['case']} | failed | - | - | {r['error'][:160]} |")
            continue
        if r.get("failed"):
            lines.append(f"| {r['case']} | > {r['cap_bytes'] / GiB:.0f} GiB (allocation failed under the cap) | untiled | - | {r['error'][:120]} |")
            continue
        tile = f"{r['decoder_tile_px']} px" if r.get("decoder_tile_px") else ("untiled" if "decode" in r["case"] else "-")
        notes = []
        if r.get("estimated_decoder_bytes"):
            notes.append(f"planner's decoder estimate {r['estimated_decoder_bytes'] / GiB:.2f} GiB")
        if "arena" in r["case"]:
            notes.append("ONNX Runtime CPU arena on (the runtime turns it off when the plan tiles the decode)")
        if "stage_peak_bytes" in r:
            notes.append(", ".join(f"{k} {v / GiB:.2f}" for k, v in r["stage_peak_bytes"].items()) + " GiB per stage")
        note = "; ".join(notes)
        lines.append(f"| {r['case']} | {r['peak_rss_bytes'] / GiB:.2f} GiB | {tile} | {r['seconds']} | {note} |")
    lines += ["", f"1024 px runs use {steps} denoising steps (peak memory does not grow with steps).",
              "", "Command: `python -m benchmarks.memory_plan`"]
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.steps), default=str))
        return
    assemble_export()
    results = []
    for case in args.cases.split(","):
        print(f"... {case}", file=sys.stderr, flush=True)
        results.append(measure(case, args.steps))
        print(f"    {json.dumps(results[-1], default=str)[:300]}", file=sys.stderr, flush=True)
    write_report(results, args.steps)


if __name__ == "__main__":
    main()
