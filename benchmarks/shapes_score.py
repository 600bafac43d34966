"""Task score of the shipped shapes-SANA per export precision: a miniature GenEval.

    python -m benchmarks.shapes_score [--per-kind N] [--steps 20] [--guidance 4.5]
        [--precisions fp32,fp16,int8,int4] [--work build/shapes-score] [--checkpoint DIR]

Exports the built-in model (sana_edge/models/shapes-sana; --checkpoint: a candidate, e.g. a
`sana-edge train-tiny` output, scored before it replaces the shipped one) at each precision
through the same path `sana-edge export` takes (int8 calibrates on the prompts shipped with the
checkpoint; int4 takes the text-encoder bits the checkpoint asks for, int4-te4 forces int4
everywhere; ov-*: `--target openvino`, NNCF on OpenVINO IR run by OpenVINO), then
generates the committed evaluation set (benchmarks/shapes_eval_set.json: scenes training never
drew, as grammar captions, in held-out paraphrase templates, and with held-out word pairs; noise
seed = 1000 + index within its kind) with every export through the torch-free runtime, and scores
each image against its caption (background, shape colour, shape, size, position). PSNR / SSIM are
against the fp32 image from the same noise. A last section scores five prompts as a new user
might type them (USER_PROMPTS), 8 seeds each, at fp32 and int8.

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
EVAL_SET = Path(__file__).parent / "shapes_eval_set.json"
PRECISIONS = ("fp32", "fp16", "int8", "int8-dec", "int4", "int4-te4", "ov-int8", "ov-int4")
# Export variants beyond the plain precisions: name -> (precision, QuantSettings overrides).
# A checkpoint may ask for other text-encoder bits at int4 (sana_edge_quantization.json; the
# first shipped model, with a frozen random text encoder, asked for 8); int4-te4 forces all-int4. ov-*: `--target openvino` (NNCF on
# OpenVINO IR, run by OpenVINO). int8-dec: `--quantize-decoder`, W8A8 on the DC-AE decoder too.
VARIANTS = {"int8-dec": ("int8", {"quantize_decoder": True}),"int4-te4": ("int4", {"text_encoder_bits": 4}),
            "ov-int8": ("int8", {"target": "openvino"}), "ov-int4": ("int4", {"target": "openvino"})}
NOISE_SEED = 1000  # caption i of a kind is generated from seed NOISE_SEED + i
EVAL_SEEDS = {"grammar": 2024, "template": 2025, "pair": 2026}
EVAL_COUNTS = {"grammar": 120, "template": 120, "pair": 48}
# What a new user might type: not the grammar, not the training templates' exact wording.
USER_PROMPTS = (
    "A big red circle in the middle, white background",
    "a large red circle at the centre on a white background",
    "Little yellow triangle in the upper right corner on a blue background.",
    "a white background with a big green square at the bottom left",
    "Black background, a small orange circle on the left side!",
)
USER_SEEDS = 8


def build_eval_set() -> dict:
    """The committed evaluation set, regenerated (tests check the file still equals it)."""
    from sana_edge import shapes

    return {
        "about": "shapes-SANA evaluation set: held-out scenes (sana_edge.shapes.is_held_out); "
                 "kinds: " + "; ".join(f"{k}: {v}" for k, v in shapes.EVAL_KINDS.items()),
        "seeds": EVAL_SEEDS,
        "noise_seed": NOISE_SEED,
        "captions": {kind: shapes.held_out_captions(EVAL_COUNTS[kind], seed, kind) for kind, seed in EVAL_SEEDS.items()},
    }


def load_eval_set(per_kind: int | None = None) -> dict[str, list[str]]:
    captions = json.loads(EVAL_SET.read_text())["captions"]
    return {kind: items[:per_kind] for kind, items in captions.items()}


def held_out_captions(count: int) -> list[str]:
    """`count` grammar captions of held-out scenes (seed 2024): the caption set of earlier results
    and of the OpenVINO export test, whose thresholds were measured on it."""
    from sana_edge import shapes

    return [caption for _, caption in shapes.dataset(EVAL_SEEDS["grammar"], count, 32, split="held_out")]


def export_all(precisions, work: Path, log, checkpoint: str | None = None) -> dict[str, Path]:
    from sana_edge.default_model import BUILTIN_NAME
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.quant.configs import QuantSettings

    exports = {}
    for precision in precisions:
        out = work / precision
        start = time.perf_counter()
        base, overrides = VARIANTS.get(precision, (precision, {}))
        options = ExportOptions(checkpoint or BUILTIN_NAME, out, precision=base, force=True,
                                quant=QuantSettings(**overrides) if overrides else None)
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


def generate_all(export: Path, captions: dict[str, list[str]], size: int, steps: int, guidance: float) -> dict[str, list]:
    """{kind: [image, ...]}: caption i of each kind from noise seed NOISE_SEED + i."""
    from sana_edge import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(export, verify=False, backend="auto")
    return {kind: [np.asarray(pipe.generate(c, height=size, width=size, steps=steps, guidance_scale=guidance,
                                            seed=NOISE_SEED + i).image)
                   for i, c in enumerate(items)] for kind, items in captions.items()}


def verdicts_of(images: dict[str, list], captions: dict[str, list[str]]) -> dict[str, list]:
    from sana_edge import shapes

    return {kind: [shapes.score_image(im, c) for im, c in zip(images[kind], captions[kind])] for kind in captions}


def score_images(verdicts: dict[str, list]) -> dict[str, dict]:
    """Task score per kind of caption, and over all of them ("all")."""
    from sana_edge import shapes

    scores = {kind: shapes.summarize(v) for kind, v in verdicts.items()}
    scores["all"] = shapes.summarize([v for kind in verdicts for v in verdicts[kind]])
    return scores


def changed_verdicts(verdicts: dict[str, list], reference: dict[str, list]) -> int:
    """Images whose verdict (right or wrong, per attribute) differs from the fp32 image's."""
    return sum(a != b for kind in verdicts for a, b in zip(verdicts[kind], reference[kind]))


def fidelity(images: dict[str, list], reference: dict[str, list]) -> dict:
    from sana_edge.metrics import psnr, ssim

    pairs = [(a, b) for kind in images for a, b in zip(images[kind], reference[kind])]
    return {"psnr_db": float(np.mean([min(psnr(a, b), 99.0) for a, b in pairs])),
            "ssim": float(np.mean([ssim(a, b) for a, b in pairs]))}


def user_prompts(exports: dict[str, Path], steps: int, guidance: float, seeds: int = USER_SEEDS) -> dict:
    """Each USER_PROMPTS entry, `seeds` seeds, scored at fp32 and int8 (where exported); none for 0 seeds."""
    if seeds == 0:
        return {}
    from sana_edge import SanaEdgePipeline, shapes

    rows = {}
    for precision in [p for p in ("fp32", "int8") if p in exports]:
        pipe = SanaEdgePipeline.from_export(exports[precision], verify=False, backend="auto")
        for prompt in USER_PROMPTS:
            scores = [shapes.score_image(pipe.generate(prompt, steps=steps, guidance_scale=guidance, seed=NOISE_SEED + s).image,
                                         prompt) for s in range(seeds)]
            rows.setdefault(prompt, {})[precision] = shapes.summarize(scores)
    return rows


def run(args, log=print) -> dict:
    from sana_edge.metrics import json_safe

    from .shapes_report import sample_grid

    captions = load_eval_set(args.per_kind)
    exports = export_all(args.precisions, args.work, log, args.checkpoint)
    images, verdicts, rows = {}, {}, {}
    for precision in args.precisions:
        start = time.perf_counter()
        images[precision] = generate_all(exports[precision], captions, args.size, args.steps, args.guidance)
        verdicts[precision] = verdicts_of(images[precision], captions)
        rows[precision] = {"task": score_images(verdicts[precision]), "graph_bytes": graph_bytes(exports[precision])}
        if precision != "fp32":
            rows[precision]["vs_fp32"] = fidelity(images[precision], images["fp32"])
            rows[precision]["changed_verdicts"] = changed_verdicts(verdicts[precision], verdicts["fp32"])
        summary = ", ".join(f"{kind} {row['overall']:.1%}" for kind, row in rows[precision]["task"].items())
        log(f"{precision}: {summary} ({time.perf_counter() - start:.0f}s)")
    grid = args.out / "shapes_grid.png"
    sample_grid(images["fp32"], captions, grid)
    users = user_prompts(exports, args.steps, args.guidance, args.user_seeds)
    checkpoint = Path(args.checkpoint) if args.checkpoint else _shipped()
    train_log = json.loads((checkpoint / "train_log.json").read_text())
    settings = {"captions": {k: len(v) for k, v in captions.items()}, "noise_seed": NOISE_SEED, "size": args.size,
                "steps": args.steps, "guidance": args.guidance, "negative_prompt": "",
                "checkpoint": str(args.checkpoint) if args.checkpoint else "shipped"}
    kept = {k: v for k, v in previous_rows(args.out / "shapes_score.json", settings).items() if k not in rows}
    if kept:
        log(f"kept from the previous run (same settings): {', '.join(kept)}")
    order = [p for p in PRECISIONS if p in rows or p in kept] + [p for p in rows if p not in PRECISIONS]
    return json_safe({
        "benchmark": "shapes_score",
        "command": "python -m benchmarks.shapes_score " + " ".join(sys.argv[1:]),
        "settings": {**settings, "precisions_run": list(rows)},
        "model": {"params": train_log["models"]["params"], "train_wall_seconds": train_log["wall_seconds"],
                  "train_command": train_log.get("command")},
        "precisions": {p: rows.get(p, kept.get(p)) for p in order},
        "user_prompts": users,
        "grid": grid.name,
    })


def _shipped() -> Path:
    from sana_edge.default_model import shipped_checkpoint

    return shipped_checkpoint()


def main(argv=None) -> dict:
    from .shapes_report import markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=None, help="first N captions of each kind (default: all)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--work", type=Path, default=Path("build/shapes-score"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--user-seeds", type=int, default=USER_SEEDS, help="seeds per user prompt (0: skip that section)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint folder to score instead of the shipped model")
    args = parser.parse_args(argv)
    args.precisions = args.precisions.split(",")
    if args.precisions[0] != "fp32":
        parser.error("--precisions must start with fp32 (the reference)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    from sana_edge.fileio import write_json_atomic, write_text_atomic

    write_json_atomic(args.out / "shapes_score.json", result, indent=1)
    write_text_atomic(args.out / "shapes_score.md", markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
