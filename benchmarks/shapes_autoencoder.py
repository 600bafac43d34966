"""What a shapes-SANA DC-AE can draw at best: the scorer on its reconstructions of rendered
held-out scenes, per shape and size.

    python -m benchmarks.shapes_autoencoder --vae run2=build/run2-vae --vae run3=sana_edge/models/shapes-sana/vae

Needs the `export` extra (torch, diffusers). Writes shapes_autoencoder.{json,md} under --out.
"""

from __future__ import annotations

import argparse
import platform
from collections import Counter
from pathlib import Path

from sana_edge import shapes
from sana_edge.fileio import write_json_atomic, write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "shapes-compare"


def reconstruction(vae, count: int, seed: int) -> dict:
    """Scorer summary on reconstructions of `count` held-out scenes, and the shape-class accuracy
    per (shape, size) cell ("any": size left to the renderer)."""
    from sana_edge.export.shapes_loops import reconstruction_verdicts

    items = shapes.dataset(seed, count, split="held_out")
    verdicts = reconstruction_verdicts(vae, items)
    right, total = Counter(), Counter()
    for verdict, (_, caption) in zip(verdicts, items):
        obj = shapes.parse_caption(caption).objects[0]
        cell = f"{obj.size or 'any'} {obj.shape}"
        total[cell] += 1
        right[cell] += verdict["shape"]
    return {"summary": shapes.summarize(verdicts), "shape_by_cell": {c: right[c] / total[c] for c in sorted(total)}}


def markdown(result: dict) -> str:
    cells = sorted({c for r in result["autoencoders"].values() for c in r["reconstruction"]["shape_by_cell"]})
    lines = ["# shapes-SANA autoencoders: what the decoder can draw", "",
             f"{result['count']} held-out scenes, rendered and reconstructed (encode, decode); the task scorer on the "
             "reconstructions; per cell: shape-class accuracy.", "",
             "| autoencoder | task score | shape class | " + " | ".join(cells) + " |",
             "|---|---|---|" + "---|" * len(cells)]
    for name, r in result["autoencoders"].items():
        rec = r["reconstruction"]
        lines.append(f"| {name} | {100 * rec['summary']['overall']:.1f}% | {100 * rec['summary']['accuracy']['shape']:.1f}% | "
                     + " | ".join(f"{100 * rec['shape_by_cell'].get(c, float('nan')):.0f}%" for c in cells) + " |")
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", action="append", required=True, help="NAME=FOLDER of an AutoencoderDC (repeatable)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch
    from diffusers import AutoencoderDC

    torch.set_num_threads(2)
    result = {"count": args.count, "machine": platform.processor() or platform.machine(), "autoencoders": {},
              "command": "python -m benchmarks.shapes_autoencoder " + " ".join(f"--vae {v}" for v in args.vae)}
    for spec in args.vae:
        name, _, folder = spec.partition("=")
        vae = AutoencoderDC.from_pretrained(folder).eval()
        result["autoencoders"][name] = {"folder": folder, "reconstruction": reconstruction(vae, args.count, args.seed)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "shapes_autoencoder.json", result, indent=1)
    write_text_atomic(args.out / "shapes_autoencoder.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
