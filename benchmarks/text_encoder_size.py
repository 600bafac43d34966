"""Size of the full Gemma-2-2B text encoder graph (random weights) per precision.

    python -m benchmarks.text_encoder_size [--work build/bench-gemma]

Builds the real Gemma2Model at full size directly in fp16 (a 10.4 GB fp32 copy plus its ONNX
copy would not fit in 24 GB next to each other), exports it through the same path as
`sana-edge export --precision fp16`, then applies the int8 and int4 weight-only recipes of
`sana-edge export --precision int8/int4` to that graph. The fp32 size is 4 bytes x parameters.
Writes benchmarks/results/text_encoder_size.json and .md.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def graph_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/bench-gemma"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch
    from transformers import Gemma2Config, Gemma2Model

    from sana_edge.backends.onnxruntime_backend import OrtSession
    from sana_edge.components import TEXT_ENCODER, sample_inputs
    from sana_edge.export import configs
    from sana_edge.export.onnx_export import as_fp16, export_component
    from sana_edge.export.wrappers import torch_module
    from sana_edge.quant.apply import quantize_component
    from sana_edge.quant.configs import build_recipe

    args.work.mkdir(parents=True, exist_ok=True)
    fp16_path = args.work / "fp16" / "text_encoder.onnx"
    from .bench_models import model_dims

    dims = model_dims("sana-0.6b")  # Gemma-2-2B's vocabulary and K/V cache shape
    timings = {}
    torch.manual_seed(0)
    config = Gemma2Config(**configs.GEMMA2_2B)
    config._attn_implementation = "eager"
    torch.set_default_dtype(torch.float16)
    model = Gemma2Model(config).eval()
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    if not fp16_path.exists():
        fp16_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        module = as_fp16(torch_module(TEXT_ENCODER, type("Pipe", (), {"text_encoder": model})()))
        export_component(TEXT_ENCODER, module, dims, fp16_path)
        timings["export_fp16_s"] = time.perf_counter() - start
        del module
    del model
    gc.collect()

    sizes = {"fp32 (4 bytes x params)": 4 * params, "fp16": graph_bytes(fp16_path)}
    feeds = sample_inputs(TEXT_ENCODER, {**dims, "batch": 1, "sequence": 32, "past_sequence": 0, "total_sequence": 32})
    finite = {}
    for precision in ("int8", "int4"):
        path = args.work / precision / "text_encoder.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            for source in fp16_path.parent.glob("text_encoder.onnx*"):
                shutil.copy(source, path.parent / source.name)
            start = time.perf_counter()
            # The text encoder's config in the same recipe `sana-edge export --precision ...` builds.
            quantize_component(path, build_recipe(precision)["text_encoder"], None)
            timings[f"quantize_{precision}_s"] = time.perf_counter() - start
        sizes[precision] = graph_bytes(path)
        hidden = OrtSession(path, ["CPUExecutionProvider"]).run(feeds)["last_hidden_state"]
        finite[precision] = bool(np.isfinite(hidden).all())
    result = {
        "benchmark": "text_encoder_size",
        "model": "Gemma-2-2B (Gemma2Model, random weights)",
        "params": params,
        "bytes": sizes,
        "vs_fp32": {k: v / sizes["fp32 (4 bytes x params)"] for k, v in sizes.items()},
        "finite_output_on_32_tokens": finite,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "command": "python -m benchmarks.text_encoder_size " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "text_encoder_size.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# {result['model']}: {params / 1e9:.2f} B params", "", "| precision | size (GiB) | vs fp32 |", "|---|---|---|"]
    lines += [f"| {k} | {v / 2**30:.2f} | {result['vs_fp32'][k]:.1%} |" for k, v in sizes.items()]
    lines += ["", f"ORT output finite on 32 tokens: {finite}", "", f"Command: `{result['command'].strip()}`", ""]
    (args.out / "text_encoder_size.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
