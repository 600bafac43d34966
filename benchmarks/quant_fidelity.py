"""What each precision costs: fp16 / int8 / int4 exports of the mid-size model (full Sana-0.6B
width, 4 DiT layers, 2-layer full-width Gemma-2; random weights) against fp32.

    python -m benchmarks.quant_fidelity [--model mid|mid-sprint] [--size 512] [--steps N] [--prompts 4]

Measures, in one run: graph sizes; transformer single-step cosine vs fp32 on held-out trajectory
inputs (prompts and seeds not used for calibration); ORT CPU per-step latency (batch 2 with CFG;
batch 1 for Sana-Sprint; interleaved, median); end-to-end `sana-edge eval` (per-step latent SQNR,
PSNR, SSIM; Sprint runs share their per-step noise). `--model mid-sprint` is the same model as
Sana-Sprint (qk norm, guidance embedding, SCM sampler, 2 steps by default).
Writes benchmarks/results/quant_fidelity.json (quant_fidelity_sprint.json) and fidelity.md, which
holds every model measured so far.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PRECISIONS = ("fp32", "fp16", "int8", "int4", "ov-int8", "ov-int4")
# ov-*: `sana-edge export --target openvino` (NNCF on OpenVINO IR), run by OpenVINO.
OPENVINO = {"ov-int8": "int8", "ov-int4": "int4"}
# Held out: none of these is in quant/calibration_prompts.txt, and the seeds differ too.
HELD_OUT_PROMPTS = (
    "a lighthouse keeper reading by candle light",
    "three origami cranes on a black table",
    "an orange tram climbing a steep street in Lisbon",
    "a frozen waterfall in a quiet pine forest",
)
HELD_OUT_SEED = 1000
MODELS = {
    "mid": "mid-size SANA: Sana-0.6B width (1152) with 4 DiT layers, 2-layer Gemma-2 (2304), tiny DC-AE; random weights",
    "mid-sprint": "mid-size Sana-Sprint: the same with qk norm and guidance embedding, SCM sampler; random weights",
}
RESULT_FILES = {"mid": "quant_fidelity.json", "mid-sprint": "quant_fidelity_sprint.json"}


def prepare_exports(work: Path, preset: str = "mid", log=print) -> dict[str, Path]:
    """Mid-size checkpoint and its exports, built once and reused (delete `work` to rebuild)."""
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.export.tiny import write_tiny_checkpoint
    from sana_edge.quant.configs import QuantSettings

    checkpoint = work / f"{preset}-checkpoint"
    if not (checkpoint / "model_index.json").exists():
        write_tiny_checkpoint(checkpoint, seed=0, preset=preset)
    exports = {}
    for precision in PRECISIONS:
        out = work / f"{preset}-{precision}"
        if not (out / "manifest.json").exists():
            start = time.perf_counter()
            quant = QuantSettings(target="openvino") if precision in OPENVINO else None
            export_checkpoint(ExportOptions(str(checkpoint), out, precision=OPENVINO.get(precision, precision), force=True,
                                            quant=quant), log=lambda _: None)
            log(f"exported {precision} in {time.perf_counter() - start:.0f}s")
        exports[precision] = out
    return exports


def held_out_transformer_inputs(export: Path, size: int, steps: int) -> list[dict]:
    """Transformer feeds of fp32 trajectories on held-out prompts, at about 5 steps of each
    (every step of a short Sprint run)."""
    from sana_edge import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(export, verify=False)
    sampler = pipe.sampler
    schedule = sampler.schedule(steps)
    feeds = []
    for index, prompt in enumerate(HELD_OUT_PROMPTS[:2]):
        embeds, mask = pipe.encode_prompts(prompt, sampler.negative("", 4.5))
        seen = []
        rng = np.random.default_rng(HELD_OUT_SEED + index)
        shape = (1, 32, size // 32, size // 32)
        latents = rng.standard_normal(shape, dtype=np.float32)
        step_noise = rng.standard_normal((schedule.noisy_steps, *shape), dtype=np.float32) if schedule.noisy_steps else None
        pipe.generate(prompt, height=size, width=size, steps=steps, guidance_scale=4.5, latents=latents,
                      step_noise=step_noise, output_type="latent", on_step=lambda done, total, x: seen.append(x))
        starts = [sampler.initial(latents, None, schedule)] + seen[:-1]
        for step in range(0, steps, max(1, steps // 5)):
            feeds.append(sampler.step_feeds(starts[step], embeds, mask, schedule, step, 4.5))
    return feeds


def transformer_session(export: Path):
    """The export's transformer on the runtime its graph is written for (OpenVINO for IR)."""
    from sana_edge.backends import get_backend, graph_backend
    from sana_edge.manifest import load_manifest

    manifest = load_manifest(export, verify=False)
    return get_backend(graph_backend(manifest), manifest).load_component(manifest, "transformer")


def transformer_checks(exports: dict, feeds: list[dict], repeats: int) -> dict:
    from sana_edge.metrics import cosine

    sessions = {p: transformer_session(exports[p]) for p in PRECISIONS}
    reference = [sessions["fp32"].run(f)["velocity"] for f in feeds]
    result = {}
    for precision, session in sessions.items():
        outputs = [session.run(f)["velocity"] for f in feeds]
        result[precision] = {"transformer_cosine_min": min(cosine(r, o) for r, o in zip(reference, outputs)),
                             "transformer_cosine_mean": float(np.mean([cosine(r, o) for r, o in zip(reference, outputs)]))}
    timing_feed = feeds[0]
    times = {p: [] for p in PRECISIONS}
    for precision, session in sessions.items():
        session.run(timing_feed)  # warm-up
    for _ in range(repeats):  # interleaved
        for precision, session in sessions.items():
            start = time.perf_counter()
            session.run(timing_feed)
            times[precision].append(time.perf_counter() - start)
    for precision in PRECISIONS:
        result[precision]["step_ms_median"] = 1000 * statistics.median(times[precision])
        result[precision]["step_ms_all"] = [round(1000 * t, 1) for t in times[precision]]
    return result


def file_bytes(export: Path, component: str) -> int:
    """The component's graph files: ONNX (+ external data), or OpenVINO's .xml + .bin."""
    return sum(p.stat().st_size for p in export.glob(f"{component}.*"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mid", choices=sorted(MODELS))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=None, help="default: the model's (20 for Sana, 2 for Sprint)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("build/bench-quant"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from sana_edge.evaluation import compare_exports
    from sana_edge.metrics import json_safe
    from sana_edge.manifest import load_manifest

    exports = prepare_exports(args.work, args.model)
    if args.steps is None:
        args.steps = load_manifest(exports["fp32"], verify=False).model.default_steps
    feeds = held_out_transformer_inputs(exports["fp32"], args.size, args.steps)
    per_precision = transformer_checks(exports, feeds, args.repeats)
    for precision in PRECISIONS:
        entry = per_precision[precision]
        for component in ("transformer", "text_encoder", "vae_decoder"):
            entry[f"{component}_bytes"] = file_bytes(exports[precision], component)
            entry[f"{component}_size_vs_fp32"] = entry[f"{component}_bytes"] / file_bytes(exports["fp32"], component)
        entry["step_latency_vs_fp32"] = entry["step_ms_median"] / per_precision["fp32"]["step_ms_median"]
        if precision != "fp32":
            comparison = compare_exports(exports["fp32"], exports[precision], list(HELD_OUT_PROMPTS[: args.prompts]),
                                         size=args.size, steps=args.steps, seed=HELD_OUT_SEED)
            entry["eval"] = comparison["summary"]
        entry["recipe"] = load_manifest(exports[precision], verify=False).data.get("quantization")
    sprint = load_manifest(exports["fp32"], verify=False).model.sprint
    result = {
        "benchmark": "quant_fidelity", "preset": args.model, "sampler": "sprint" if sprint else "sana",
        "model": MODELS[args.model],
        "size_px": args.size, "steps": args.steps, "held_out_prompts": list(HELD_OUT_PROMPTS[: args.prompts]),
        "transformer_inputs": len(feeds), "precisions": per_precision,
        "command": "python -m benchmarks.quant_fidelity " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT_FILES[args.model]).write_text(json.dumps(json_safe(result), indent=2) + "\n")
    measured = [json.loads((args.out / name).read_text()) for name in RESULT_FILES.values() if (args.out / name).is_file()]
    (args.out / "fidelity.md").write_text("\n".join(render(r) for r in measured))
    print(render(result))
    return result


def render(result: dict) -> str:
    sprint = result.get("sampler") == "sprint"
    rows = [
        f"# Fidelity and cost of each precision (mid-size {'Sana-Sprint' if sprint else 'SANA'}, random weights)",
        "",
        f"{result['model']}. {result['size_px']} px, {result['steps']} steps, guidance 4.5"
        f"{' (embedded), the same per-step noise for every precision' if sprint else ''}, "
        f"{len(result['held_out_prompts'])} held-out prompts; transformer checks on "
        f"{result['transformer_inputs']} held-out trajectory inputs ({'batch 1, no CFG' if sprint else 'batch 2, CFG'}). "
        "ONNX Runtime CPU; ov-int8 / ov-int4: `--target openvino` (NNCF: nncf.quantize W8A8 / compress_weights "
        "INT4_SYM transformer, 8-bit text encoder), OpenVINO CPU.",
        "",
        "| precision | DiT size vs fp32 | text enc. size vs fp32 | DiT step (ms, median) | vs fp32 | DiT cosine min | final latent SQNR (dB) | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for precision, e in result["precisions"].items():
        ev = e.get("eval") or {}

        def get(key, digits=2):
            value = (ev.get(key) or {}).get("mean") if isinstance(ev.get(key), dict) else ev.get(key)
            return "-" if value is None else (str(value) if isinstance(value, str) else f"{value:.{digits}f}")

        rows.append(
            f"| {precision} | {e['transformer_size_vs_fp32']:.0%} | {e['text_encoder_size_vs_fp32']:.0%} | "
            f"{e['step_ms_median']:.0f} | {e['step_latency_vs_fp32']:.2f}x | {e['transformer_cosine_min']:.5f} | "
            f"{get('final_latent_sqnr_db')} | {get('psnr_db')} | {get('ssim', 4)} |"
        )
    rows += ["", "Per-step latent SQNR vs fp32 (dB, mean over prompts), step 1 -> last:", ""]
    for precision, e in result["precisions"].items():
        steps = (e.get("eval") or {}).get("latent_sqnr_db_per_step")
        if steps:
            rows.append(f"- {precision}: " + ", ".join(s if isinstance(s, str) else f"{s:.1f}" for s in steps))
    rows += ["", f"Command: `{result['command'].strip()}`", ""]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
