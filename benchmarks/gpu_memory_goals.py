"""The laptop-GPU memory goals by the memory planner's ESTIMATE (no GPU measured):

    python -m benchmarks.gpu_memory_goals        # -> benchmarks/results/gpu_memory_goals.{json,md}

Each row asks sana_edge.planner.plan_memory, as `sana-edge run --backend ort-cuda --max-memory B`
would, for a plan within the budget: stages one at a time, the decoder tiled if needed. Stage
weights are counted from the full-size architectures (built on torch's meta device, no weights
allocated) at the bytes per weight each precision stores; the activation estimates are the
planner's own (fitted to fp32 CPU peaks, so conservative for fp16 graphs). Assumptions, all in
the output: the CUDA context and ORT/cuDNN libraries hold BASE_BYTES before any stage; the
8-bit text encoder keeps its embedding table in fp16 (MatMulNBits quantizes the matmuls), the
4-bit one quantizes it too (GatherBlockQuantized); scales cost 2 bytes per 128-weight block.
The lent GPU's suite measures the real peaks (benchmarks.gpu_suite).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from sana_edge.errors import UserError
from sana_edge.fileio import write_json_atomic, write_text_atomic
from sana_edge.memory import GiB

RESULTS = Path(__file__).parent / "results"
BASE_BYTES = int(0.5 * GiB)  # CUDA context + ORT CUDA/cuDNN/cuBLAS workspaces before any stage (assumed)
TEXT_LENGTH = 300 + 256  # caption tokens + the complex human instruction's (Gemma tokenizer, about)
BLOCK = 128


@dataclass(frozen=True)
class Goal:
    model: str
    size: int
    budget_gib: float
    text_encoder_bits: int  # 16 = fp16
    transformer_bits: int = 16
    label: str = ""


GOALS = (
    Goal("sana-0.6b", 1024, 4.0, 16, label="fp16 text encoder (for contrast)"),
    Goal("sana-0.6b", 1024, 4.0, 8, label="goal: 8-bit text encoder"),
    Goal("sana-0.6b", 1024, 4.0, 4, label="goal: 4-bit text encoder"),
    Goal("sana-1.6b", 4096, 6.0, 8, label="goal: tiled decode, 8-bit text encoder"),
    Goal("sana-1.6b", 4096, 6.0, 4, label="goal: tiled decode, 4-bit text encoder"),
    Goal("sana-1.6b", 4096, 6.0, 4, transformer_bits=8, label="8-bit DiT too"),
)


def parameter_counts(model: str) -> dict:
    """component -> (matrix params, other params, embedding params), counted on the meta device."""
    import torch
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    from sana_edge.export import configs

    preset = configs.PRESETS[model]
    with torch.device("meta"):
        modules = {"transformer": SanaTransformer2DModel(**preset["transformer"]),
                   "vae_decoder": AutoencoderDC(**preset["vae"]).decoder,
                   "text_encoder": Gemma2Model(Gemma2Config(**preset["text_encoder"]))}
    counts = {}
    for name, module in modules.items():
        embedding = sum(p.numel() for n, p in module.named_parameters() if "embed_tokens" in n)
        matrices = sum(p.numel() for n, p in module.named_parameters() if p.dim() >= 2 and "embed_tokens" not in n)
        others = sum(p.numel() for p in module.parameters()) - matrices - embedding
        counts[name] = (matrices, others, embedding)
    return counts


def stored_bytes(counts: tuple, bits: int, embedding_bits: int) -> int:
    def at(params: int, b: int) -> float:
        return params * 2 if b == 16 else params * b / 8 + params / BLOCK * 2

    matrices, others, embedding = counts
    return int(at(matrices, bits) + others * 2 + at(embedding, embedding_bits))


def model_values(model: str):
    from sana_edge.export import configs
    from sana_edge.export.source_configs import model_values_from_configs

    preset = configs.PRESETS[model]
    return model_values_from_configs({"transformer": preset["transformer"], "vae_decoder": preset["vae"],
                                      "text_encoder": preset["text_encoder"]}, configs.SANA_SCHEDULER_CONFIG)


def estimate(goal: Goal, counts: dict) -> dict:
    from sana_edge.planner import plan_memory

    text_embedding_bits = 4 if goal.text_encoder_bits == 4 else 16
    weights = {"text_encoder": stored_bytes(counts["text_encoder"], goal.text_encoder_bits, text_embedding_bits),
               "transformer": stored_bytes(counts["transformer"], goal.transformer_bits, 16),
               "vae_decoder": stored_bytes(counts["vae_decoder"], 16, 16)}
    row = {"goal": goal.__dict__, "weights_gib": {k: v / GiB for k, v in weights.items()}}
    try:
        plan = plan_memory(model_values(goal.model), weights, goal.size, goal.size, int(goal.budget_gib * GiB),
                           keep_loaded=False, base=BASE_BYTES, text_length=TEXT_LENGTH)
    except UserError as exc:
        return row | {"fits": False, "why": str(exc)}
    return row | {"fits": True, "peak_gib": plan.peak / GiB, "stage_gib": {k: v / GiB for k, v in plan.stage_bytes.items()},
                  "decoder_tile_px": plan.decoder_tile * 32 if plan.decoder_tile else None}


def markdown(rows: list[dict]) -> str:
    lines = ["# Memory goals by the planner's estimate (no GPU measured)", "",
             f"`python -m benchmarks.gpu_memory_goals`: stages one at a time on ort-cuda, fp16 graphs unless noted, "
             f"{BASE_BYTES / GiB:.1f} GiB assumed for the CUDA context and libraries, planner activation estimates "
             "(fitted to fp32 CPU peaks). Estimates, not measurements: `benchmarks.gpu_suite` measures them on a GPU.",
             "Float parts (norms, biases, the 8-bit text encoder's embedding table) are counted in fp16; today's "
             "int8/int4 exports quantize fp32 graphs, so their float parts are fp32 (the 8-bit text encoder's "
             "embedding alone is 2.2 GiB there, 1.1 GiB in fp16).", "",
             "| model | size | budget | text encoder | DiT | weights TE / DiT / dec. GiB | estimated peak | stages TE / DiT / dec. GiB | decoder | fits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        g, w = row["goal"], row["weights_gib"]
        bits = lambda b: "fp16" if b == 16 else f"{b}-bit"  # noqa: E731
        weights = f"{w['text_encoder']:.2f} / {w['transformer']:.2f} / {w['vae_decoder']:.2f}"
        if row["fits"]:
            s = row["stage_gib"]
            stages = f"{s['text_encoder']:.2f} / {s['transformer']:.2f} / {s['vae_decoder']:.2f}"
            tile = f"{row['decoder_tile_px']} px tiles" if row["decoder_tile_px"] else "untiled"
            peak, fits = f"{row['peak_gib']:.2f} GiB", "yes"
        else:
            stages, tile, peak, fits = "-", "-", "-", "no: " + row["why"].split(";")[0]
        lines.append(f"| {g['model']} | {g['size']} px | {g['budget_gib']:.0f} GB | {bits(g['text_encoder_bits'])} | "
                     f"{bits(g['transformer_bits'])} | {weights} | {peak} | {stages} | {tile} | {fits} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_memory_goals")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    counts = {model: parameter_counts(model) for model in {g.model for g in GOALS}}
    rows = [estimate(goal, counts[goal.model]) for goal in GOALS]
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "gpu_memory_goals.json", {"base_bytes": BASE_BYTES, "text_length": TEXT_LENGTH,
                                                               "rows": rows})
    write_text_atomic(args.results / "gpu_memory_goals.md", markdown(rows))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
