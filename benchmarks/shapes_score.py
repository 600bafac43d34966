"""Task score of the shipped shapes-SANA per export precision: a miniature GenEval.

    python -m benchmarks.shapes_score [--captions 120] [--steps 20] [--guidance 4.5]
        [--precisions fp32,fp16,int8,int4] [--work build/shapes-score]

Exports the built-in model (sana_edge/models/shapes-sana) at each precision through the same path
`sana-edge export` takes (int8 calibrates on the prompts shipped with the checkpoint), then
generates a fixed held-out caption set (captions training never drew, sana_edge.shapes.is_held_out;
noise seed = 1000 + caption index) with every export through the torch-free runtime, and scores
each image against its caption (background, shape colour, shape, size, position). Each quantized
export is compared with fp32 from the same noise (`sana_edge.evaluation.compare_exports`, what
`sana-edge eval` runs), so the table puts task score next to PSNR / SSIM / latent SQNR.

Writes benchmarks/results/shapes_score.json, shapes_score.md and shapes_grid.png (fp32 samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PRECISIONS = ("fp32", "fp16", "int8", "int4", "int4-te4", "ov-int8", "ov-int4")
# Export variants beyond the plain precisions: name -> (precision, QuantSettings overrides).
# The shipped model asks for an 8-bit text encoder at int4 (sana_edge_quantization.json);
# int4-te4 forces the recipe's all-int4 to show why. ov-*: `--target openvino` (NNCF on
# OpenVINO IR, run by OpenVINO).
VARIANTS = {"int4-te4": ("int4", {"text_encoder_bits": 4}),
            "ov-int8": ("int8", {"target": "openvino"}), "ov-int4": ("int4", {"target": "openvino"})}
CAPTION_SEED = 2024  # which held-out captions
NOISE_SEED = 1000  # caption i is generated from seed NOISE_SEED + i


def held_out_captions(count: int) -> list[str]:
    from sana_edge import shapes

    return [caption for _, caption in shapes.dataset(CAPTION_SEED, count, 32, split="held_out")]


def export_all(precisions, work: Path, log) -> dict[str, Path]:
    from sana_edge.default_model import BUILTIN_NAME
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.quant.configs import QuantSettings

    exports = {}
    for precision in precisions:
        out = work / precision
        start = time.perf_counter()
        base, overrides = VARIANTS.get(precision, (precision, {}))
        options = ExportOptions(BUILTIN_NAME, out, precision=base, force=True, quant=QuantSettings(**overrides) if overrides else None)
        export_checkpoint(options, log=lambda _: None)
        log(f"exported {precision} in {time.perf_counter() - start:.1f}s")
        exports[precision] = out
    return exports


def graph_bytes(export: Path) -> int:
    return sum(p.stat().st_size for pattern in ("*.onnx*", "*.xml", "*.bin") for p in export.glob(pattern))


def previous_rows(path: Path, settings: dict) -> dict:
    """Rows of an earlier run with the same settings, kept for precisions this run skips."""
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    same = {k: v for k, v in earlier.get("settings", {}).items() if k != "precisions_run"} == settings
    return earlier.get("precisions", {}) if same else {}


def sample_grid(export: Path, captions: list[str], steps: int, guidance: float, path: Path, columns: int = 4) -> None:
    """fp32 samples with their captions under them: what the score is counting."""
    from PIL import Image, ImageDraw

    from sana_edge import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(export, verify=False)
    tiles = []
    for i, caption in enumerate(captions):
        image = pipe.generate(caption, steps=steps, guidance_scale=guidance, seed=NOISE_SEED + i).image
        tiles.append((image.resize((192, 192), Image.NEAREST), caption))
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * 200, rows * 240), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, caption) in enumerate(tiles):
        x, y = (i % columns) * 200 + 4, (i // columns) * 240 + 4
        grid.paste(image, (x, y))
        words, lines = caption.split(), [""]
        for word in words:  # wrap at ~32 characters
            lines[-1:] = [f"{lines[-1]} {word}".strip()] if len(lines[-1]) + len(word) < 32 else [lines[-1], word]
        draw.multiline_text((x, y + 194), "\n".join(lines), fill="black", spacing=1)
    grid.save(path)


def run(args, log=print) -> dict:
    from sana_edge.evaluation import compare_exports
    from sana_edge.metrics import json_safe

    captions = held_out_captions(args.captions)
    exports = export_all(args.precisions, args.work, log)
    reference = "fp32"
    rows = {}
    for precision in args.precisions:
        if precision == reference:
            continue
        start = time.perf_counter()
        result = compare_exports(exports[reference], exports[precision], captions, size=args.size, steps=args.steps,
                                 guidance_scale=args.guidance, seed=NOISE_SEED, verify=False)
        summary = result["summary"]
        rows.setdefault(reference, {"task": summary["task_score"]["a"], "graph_bytes": graph_bytes(exports[reference])})
        if rows[reference]["task"] != summary["task_score"]["a"]:  # the runtime must be deterministic
            raise RuntimeError("fp32 scored differently in two comparisons from the same noise")
        rows[precision] = {
            "task": summary["task_score"]["b"],
            "graph_bytes": graph_bytes(exports[precision]),
            "vs_fp32": {key: summary[key] for key in ("psnr_db", "ssim", "final_latent_sqnr_db", "transformer_cosine")},
            "changed_verdicts": sum(r["task_a"] != r["task_b"] for r in result["prompts"]),
        }
        log(f"{precision}: task {rows[precision]['task']['overall']:.1%} vs fp32 {rows[reference]['task']['overall']:.1%}, "
            f"PSNR mean {summary['psnr_db']['mean']:.1f} dB ({time.perf_counter() - start:.0f}s)")
    if len(rows) == 0:  # only fp32 asked for: score it against itself
        result = compare_exports(exports[reference], exports[reference], captions, size=args.size, steps=args.steps,
                                 guidance_scale=args.guidance, seed=NOISE_SEED, verify=False)
        rows[reference] = {"task": result["summary"]["task_score"]["a"], "graph_bytes": graph_bytes(exports[reference])}
    grid = args.out / "shapes_grid.png"
    sample_grid(exports[reference], captions[:12], args.steps, args.guidance, grid)
    train_log = json.loads((_shipped() / "train_log.json").read_text())
    settings = {"captions": len(captions), "caption_seed": CAPTION_SEED, "noise_seed": NOISE_SEED,
                "size": args.size, "steps": args.steps, "guidance": args.guidance, "negative_prompt": ""}
    kept = {k: v for k, v in previous_rows(args.out / "shapes_score.json", settings).items() if k not in rows}
    if kept:
        log(f"kept from the previous run (same settings): {', '.join(kept)}")
    order = [p for p in PRECISIONS if p in rows or p in kept] + [p for p in rows if p not in PRECISIONS]
    return json_safe({
        "benchmark": "shapes_score",
        "command": "python -m benchmarks.shapes_score " + " ".join(sys.argv[1:]),
        "settings": {**settings, "precisions_run": list(rows)},
        "model": {"params": train_log["models"]["params"], "train_wall_seconds": train_log["wall_seconds"]},
        "precisions": {p: rows.get(p, kept.get(p)) for p in order},
        "captions": captions,
        "grid": grid.name,
    })


def _shipped() -> Path:
    from sana_edge.default_model import shipped_checkpoint

    return shipped_checkpoint()


def markdown(result: dict) -> str:
    s = result["settings"]
    attributes = list(result["precisions"]["fp32"]["task"]["accuracy"])
    lines = [
        "# shapes-SANA task score per export precision",
        "",
        f"{s['captions']} held-out captions (never drawn in training), {s['size']} px, {s['steps']} steps, "
        f"guidance {s['guidance']}, noise seed {s['noise_seed']} + i, ONNX Runtime CPU. int4: int4 transformer, 8-bit text encoder (what the "
        "checkpoint asks for); int4-te4: `--precision int4 --text-encoder-bits 4` (all int4). ov-int8 / ov-int4: "
        "`--target openvino` (NNCF: nncf.quantize W8A8 / compress_weights INT4_SYM on the transformer, 8-bit "
        "text encoder; OpenVINO IR run by OpenVINO CPU). Score = mean of the "
        "per-attribute accuracies; all-correct = images right in every stated attribute. PSNR / SSIM / SQNR: "
        "against the fp32 export from the same noise (mean over captions).",
        "",
        "| precision | task score | " + " | ".join(attributes) + " | all correct | graphs (MB) | PSNR (dB) | SSIM | final latent SQNR (dB) | verdicts changed |",
        "|---|---|" + "---|" * len(attributes) + "---|---|---|---|---|---|",
    ]
    fp32 = result["precisions"]["fp32"]["task"]["overall"]
    for precision, row in result["precisions"].items():
        task, cmp = row["task"], row.get("vs_fp32")
        delta = "" if precision == "fp32" else f" ({100 * (task['overall'] - fp32):+.1f})"
        metrics = (["-"] * 3 if cmp is None else
                   [f"{cmp['psnr_db']['mean']:.1f}" if cmp['psnr_db']['mean'] != "inf" else "inf",
                    f"{cmp['ssim']['mean']:.4f}",
                    f"{cmp['final_latent_sqnr_db']['mean']:.1f}" if cmp['final_latent_sqnr_db']['mean'] != "inf" else "inf"])
        lines.append(
            f"| {precision} | **{100 * task['overall']:.1f}%**{delta} | "
            + " | ".join(f"{100 * task['accuracy'][a]:.1f}%" for a in attributes)
            + f" | {100 * task['all_correct']:.1f}% | {row['graph_bytes'] / 1e6:.2f} | " + " | ".join(metrics)
            + f" | {row.get('changed_verdicts', '-')} |"
        )
    lines += ["", f"![fp32 samples]({result['grid']})", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=120)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--work", type=Path, default=Path("build/shapes-score"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.precisions = args.precisions.split(",")
    if "fp32" not in args.precisions:
        parser.error("--precisions must include fp32 (the reference)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    (args.out / "shapes_score.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "shapes_score.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
