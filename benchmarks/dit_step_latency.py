"""Full-size Sana DiT (random weights): export time and size, and per-step latency of diffusers
PyTorch fp32 against sana-edge ONNX Runtime fp32, interleaved in one run.

    python -m benchmarks.dit_step_latency [--model 600m] [--size 512] [--repeats 7] [--threads 2]

Writes benchmarks/results/dit_step_latency_<model>_<size>.json and .md. Latency does not depend
on weight values, so random weights measure what a real checkpoint would.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def build_transformer(model: str):
    import torch
    from diffusers import SanaTransformer2DModel

    from sana_edge.export import configs

    config = {"600m": configs.SANA_600M_TRANSFORMER, "1600m": configs.SANA_1600M_TRANSFORMER}[model]
    torch.manual_seed(0)
    return SanaTransformer2DModel(**config).eval()


def step_inputs(size: int, batch: int = 2, caption_length: int = 300, caption_channels: int = 2304):
    rng = np.random.default_rng(0)
    latent = size // 32
    mask = np.ones((batch, caption_length), np.int64)
    mask[0, 40:] = 0  # the negative prompt is mostly padding, as in a real CFG batch
    return {
        "latents": rng.standard_normal((batch, 32, latent, latent)).astype(np.float32),
        "encoder_hidden_states": rng.standard_normal((batch, caption_length, caption_channels)).astype(np.float32),
        "encoder_attention_mask": mask,
        "timestep": np.full(batch, 999.0, np.float32),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="600m", choices=["600m", "1600m"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import onnx
    import torch

    from benchmarks.bench_machine import cpu_isa, load_average

    from sana_edge.backends.onnxruntime_backend import OrtSession
    from sana_edge.components import CAPTION_KV, TRANSFORMER, TRANSFORMER_STEP
    from sana_edge.export.onnx_export import export_component
    from sana_edge.export.wrappers import torch_module
    from sana_edge.metrics import cosine

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    transformer = build_transformer(args.model)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in transformer.parameters())
    pipe = type("Pipe", (), {"transformer": transformer})()
    module = torch_module(TRANSFORMER, pipe)
    config = transformer.config
    dims = {"latent_channels": 32, "out_channels": 32, "caption_channels": 2304,
            "transformer_layers": config.num_layers, "cross_attention_heads": config.num_cross_attention_heads,
            "cross_attention_head_dim": config.cross_attention_head_dim}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / TRANSFORMER.file
        start = time.perf_counter()
        export_component(TRANSFORMER, module, dims, path)
        export_s = time.perf_counter() - start
        files = sorted(Path(tmp).glob("transformer.onnx*"))
        size_bytes = sum(f.stat().st_size for f in files)
        assert len(onnx.load(str(path), load_external_data=False).graph.node) > 0

        session = OrtSession(path, ["CPUExecutionProvider"], threads=args.threads)
        feeds = step_inputs(args.size)
        torch_args = [torch.from_numpy(feeds[n]) for n in TRANSFORMER.input_names]

        # The split graphs (issue 13): caption K/V once per generation, then the step that reads them.
        start = time.perf_counter()
        for spec in (CAPTION_KV, TRANSFORMER_STEP):
            export_component(spec, torch_module(spec, pipe), dims, Path(tmp) / spec.file)
        split_export_s = time.perf_counter() - start
        caption = OrtSession(Path(tmp) / CAPTION_KV.file, ["CPUExecutionProvider"], threads=args.threads)
        step = OrtSession(Path(tmp) / TRANSFORMER_STEP.file, ["CPUExecutionProvider"], threads=args.threads)

        def run_caption():
            return caption.run({"encoder_hidden_states": feeds["encoder_hidden_states"]})

        step_feeds = {**{n: feeds[n] for n in ("latents", "encoder_attention_mask", "timestep")}, **run_caption()}

        def run_step():
            return step.run(step_feeds)["velocity"]

        def run_torch():
            with torch.no_grad():
                return module(*torch_args).numpy()

        def run_ort():
            return session.run(feeds)["velocity"]

        similarity = cosine(run_torch(), run_ort())  # also the warm-up of both
        split_similarity = cosine(run_ort(), run_step())
        runners = {"diffusers_torch_fp32": run_torch, "sana_edge_ort_fp32": run_ort,
                   "sana_edge_ort_fp32_split_step": run_step, "caption_kv_once": run_caption}
        times = {name: [] for name in runners}
        for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
            for name, fn in runners.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        for each in (session, caption, step):
            each.close()

    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "dit_step_latency",
        "model": f"Sana-{args.model} transformer (random weights)",
        "params": params,
        "size_px": args.size,
        "batch": 2,
        "caption_length": 300,
        "threads": args.threads,
        "repeats": args.repeats,
        "build_s": round(build_s, 2),
        "export_s": round(export_s, 2),
        "onnx_bytes": size_bytes,
        "onnx_files": [f.name for f in files],
        "cosine_ort_vs_torch": similarity,
        "cosine_split_vs_single": split_similarity,
        "split_export_s": round(split_export_s, 2),
        "step_seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "median_step_s": {k: round(v, 4) for k, v in medians.items()},
        "speedup_ort_vs_torch": round(medians["diffusers_torch_fp32"] / medians["sana_edge_ort_fp32"], 3),
        "machine": {"cpu": platform.processor() or platform.machine(), "isa": cpu_isa(),
                    "python": platform.python_version(), "load_average_1m": load_average()},
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "command": "python -m benchmarks.dit_step_latency " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"dit_step_latency_{args.model}_{args.size}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    return result


def _markdown(r: dict) -> str:
    def spread(values):
        return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"

    rows = [
        f"# {r['model']}, {r['size_px']} px, batch {r['batch']} (CFG), {r['threads']} CPU threads",
        "",
        f"{r['params'] / 1e6:.0f} M params; export {r['export_s']:.1f} s; ONNX {r['onnx_bytes'] / 2**30:.2f} GiB "
        f"in {len(r['onnx_files'])} files; cosine ORT vs PyTorch {r['cosine_ort_vs_torch']:.6f}; "
        f"split step vs single graph {r.get('cosine_split_vs_single', float('nan')):.6f}; "
        f"CPU {r['machine'].get('isa', '?')}, load {r['machine'].get('load_average_1m', '?')}",
        "",
        "| backend | median step (ms) | range (ms) | speedup |",
        "|---|---|---|---|",
    ]
    base = r["median_step_s"]["diffusers_torch_fp32"]
    for name, median in r["median_step_s"].items():
        rows.append(f"| {name} | {median * 1000:.0f} | {spread(r['step_seconds'][name])} | {base / median:.2f}x |")
    if "caption_kv_once" in r["median_step_s"]:
        steps, single = 20, r["median_step_s"]["sana_edge_ort_fp32"]
        split = r["median_step_s"]["sana_edge_ort_fp32_split_step"]
        once = r["median_step_s"]["caption_kv_once"]
        rows += ["", f"caption_kv_once runs once per image (its speedup column is not a step). Over {steps} "
                 f"steps: single graph {single * steps:.1f} s, split {once + split * steps:.1f} s "
                 f"({single * steps / (once + split * steps):.2f}x)."]
    rows += ["", f"Command: `{r['command'].strip()}` ({r['repeats']} interleaved repeats after one warm-up)", ""]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
