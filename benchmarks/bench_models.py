"""What `benchmarks.latency` measures: the models (real configs, random weights), each stage's
inputs, and each stage's FLOP count.

Stages: `text_encoder` (Gemma-2, 300 tokens, batch 2: negative + positive prompt), `step` (one DiT
forward, batch 2 for CFG, 300 caption tokens) and `decode` (DC-AE decoder, batch 1). Sana-Sprint
models (`sprint-*`) run without CFG: text encoding and steps at batch 1, the step with the guidance
input, as SanaSprintPipeline runs them. Latency does not depend on weight values, so random
weights measure what a real checkpoint would.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` while the real diffusers /
transformers modules run on the `meta` device at the benchmark's shapes (no weights are
allocated, nothing is computed, about a second at full size). It counts the matmul-like ops
(linear, matmul/bmm, convolutions incl. depthwise, attention) as 2 x multiply-adds, and ignores
elementwise ops and norms, so the compute floor derived from it is a lower bound.

Run as a module it prints the FLOP counts, parameter counts and torch's fp32 GEMM rate as JSON
(the orchestrator calls it in a subprocess so that it never imports torch itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from types import SimpleNamespace

import numpy as np

from sana_edge.export import configs, variants

from .bench_cached_path import STAGE_COMPONENT, cached_inputs, transformer_dims
from .dit_step_latency import step_inputs

STAGES = ("text_encoder", "step", "decode")
COMPONENT_OF = {"text_encoder": "text_encoder", "step": "transformer", "decode": "vae_decoder", **STAGE_COMPONENT}
# The split transformer graphs are built from the transformer's config.
CONFIG_OF = {"caption_kv": "transformer", "transformer_step": "transformer"}
CAPTION_TOKENS = 300
CFG_BATCH = 2

MODELS = {
    "sana-0.6b": dict(transformer=configs.SANA_600M_TRANSFORMER, vae_decoder=configs.DCAE_F32C32,
                      text_encoder=configs.GEMMA2_2B),
    "sana-1.6b": dict(transformer=configs.SANA_1600M_TRANSFORMER, vae_decoder=configs.DCAE_F32C32,
                      text_encoder=configs.GEMMA2_2B),
    "tiny": dict(transformer=configs.TINY_TRANSFORMER, vae_decoder=configs.TINY_DCAE,
                 text_encoder=configs.TINY_GEMMA2),
    # Full-width layers, fewer of them (Gemma-2-2B: 2 of 26 layers): per-layer costs of the full
    # model in a fraction of its time and memory, for when the full size does not fit a run.
    "mid": dict(transformer=configs.MID_TRANSFORMER, vae_decoder=configs.TINY_DCAE,
                text_encoder=configs.MID_GEMMA2),
    # Sana-Sprint 0.6B: the published settings (qk norm, guidance embedding) at full size.
    "sprint-0.6b": dict(transformer=variants.full_transformer("sprint-0.6b"), vae_decoder=configs.DCAE_F32C32,
                        text_encoder=configs.GEMMA2_2B),
    "sprint-tiny": dict(transformer=variants.tiny_transformer("sprint-0.6b"), vae_decoder=configs.TINY_DCAE,
                        text_encoder=configs.TINY_GEMMA2),
}


# The full-sequence text encoder of exports made before the prefix cache: the "old path" of
# benchmarks.text_encoder_latency (a graph of its own, same weights as "text_encoder").
LEGACY_TEXT_ENCODER = "text_encoder_legacy"


def is_sprint(model: str) -> bool:
    return bool(MODELS[model]["transformer"].get("guidance_embeds"))


def batch(model: str) -> int:
    """Batch of the text encoder and DiT stages: 2 with CFG (Sana), 1 for Sana-Sprint."""
    return 1 if is_sprint(model) else CFG_BATCH


def component_spec(component: str, model: str = "sana-0.6b"):
    """The declaration of a benchmark component (sana_edge.components, or the legacy text encoder)
    as this model's graph has it (Sprint: the guidance input)."""
    from sana_edge.components import COMPONENTS
    from sana_edge.components import LEGACY_TEXT_ENCODER as legacy

    if component == LEGACY_TEXT_ENCODER:
        return legacy
    values = SimpleNamespace(guidance_embeds=is_sprint(model), controlnet_layers=0)
    return COMPONENTS[component].for_model(values)


def model_config(model: str, component: str) -> dict:
    """The diffusers / transformers config a benchmark component is built from."""
    return MODELS[model][CONFIG_OF.get(component, component)]


def model_dims(model: str) -> dict:
    """The model dimensions the component declarations bind (as ModelValues.dims())."""
    cfg = MODELS[model]
    dit, text = cfg["transformer"], cfg["text_encoder"]
    return {**transformer_dims(dit), "latent_channels": dit["in_channels"], "out_channels": dit["out_channels"] or dit["in_channels"],
            "caption_channels": dit["caption_channels"], "vocab_size": text["vocab_size"],
            "text_layers": text["num_hidden_layers"], "text_kv_heads": text["num_key_value_heads"],
            "text_head_dim": text["head_dim"]}


def empty_past(model: str, batch: int) -> dict[str, np.ndarray]:
    """Past K/V of length 0: the text encoder graph then encodes whole sequences (the old path)."""
    from sana_edge.components import PAST_KEYS, PAST_VALUES, TEXT_ENCODER

    dims = {**model_dims(model), "batch": batch, "past_sequence": 0}
    shape = TEXT_ENCODER.shape(TEXT_ENCODER.inputs[TEXT_ENCODER.input_names.index(PAST_KEYS)], dims)
    return {PAST_KEYS: np.zeros(shape, np.float32), PAST_VALUES: np.zeros(shape, np.float32)}


def stage_inputs(model: str, stage: str, size: int | None) -> dict[str, np.ndarray]:
    """Deterministic inputs of one stage, named as the component declarations name them."""
    if stage in STAGE_COMPONENT:
        return cached_inputs(model, stage, size)
    dims = model_dims(model)
    if stage == "step":
        feeds = step_inputs(size, batch=batch(model), caption_length=CAPTION_TOKENS,
                            caption_channels=dims["caption_channels"])
        if is_sprint(model):  # Sprint's timestep is its SCM time in [0, 1]; guidance 4.5 x 0.1
            feeds["timestep"][:] = 1.0
            feeds["guidance"] = np.full(batch(model), 0.45, np.float32)
        return feeds
    rng = np.random.default_rng(0)
    if stage == "text_encoder":
        mask = np.ones((batch(model), CAPTION_TOKENS), np.int64)
        if batch(model) == CFG_BATCH:
            mask[0, 2:] = 0  # the empty negative prompt: BOS + EOS, then padding (as SanaPipeline pads it)
        ids = rng.integers(4, dims["vocab_size"], (batch(model), CAPTION_TOKENS), dtype=np.int64)
        return {"input_ids": ids * mask, "attention_mask": mask, **empty_past(model, batch(model))}
    latent = size // 32
    return {"latent": rng.standard_normal((1, dims["latent_channels"], latent, latent)).astype(np.float32)}


def build_torch(model: str, component: str):
    """The diffusers / transformers module of `component`, wrapped with the graph's signature
    (so the baseline runs exactly the modules the export traces). Random weights, seed 0."""
    import torch
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    from sana_edge.export.wrappers import torch_module

    spec = component_spec(component, model)
    cfg = model_config(model, spec.name)
    torch.manual_seed(0)
    if spec.name in ("transformer", *CONFIG_OF):
        module = SanaTransformer2DModel(**cfg)
    elif spec.name == "vae_decoder":
        module = AutoencoderDC(**cfg)
        module.encoder = None  # decode only: the stage compares like for like with the decoder graph
    else:
        config = Gemma2Config(**cfg)
        config._attn_implementation = "eager"  # logit soft-capping, as SanaPipeline runs it
        module = Gemma2Model(config)
    pipe = SimpleNamespace(text_encoder=module, transformer=module, vae=module)
    return torch_module(spec, pipe)


def torch_args(stage: str, feeds: dict, device: str = "cpu", dtype=None, model: str = "sana-0.6b") -> list:
    """Feeds as torch tensors in the order the wrapped module takes them."""
    import torch

    args = []
    for name in component_spec(COMPONENT_OF[stage], model).input_names:
        tensor = torch.from_numpy(feeds[name]).to(device)
        args.append(tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor)
    return args


def count_flops(model: str, sizes: list[int]) -> dict:
    """FLOPs of each stage at each size, and parameter counts (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    result = {"flops": {"text_encoder": None, "step": {}, "decode": {}}, "params": {}}
    for stage in STAGES:
        component = COMPONENT_OF[stage]
        with torch.device("meta"):
            module = build_torch(model, component)
        result["params"][component] = sum(p.numel() for p in module.parameters())
        for size in ([None] if stage == "text_encoder" else sizes):
            args = [torch.empty(a.shape, dtype=a.dtype, device="meta")
                    for a in torch_args(stage, stage_inputs(model, stage, size), model=model)]
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                module(*args)
            if size is None:
                result["flops"][stage] = counter.get_total_flops()
            else:
                result["flops"][stage][str(size)] = counter.get_total_flops()
    return result


def torch_gemm_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` fp32 GEMM rate of torch (oneDNN / MKL) at n x n x n."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="FLOP counts and torch GEMM rate, as JSON on stdout")
    parser.add_argument("--model", default="sana-0.6b", choices=sorted(MODELS))
    parser.add_argument("--sizes", default="512")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = count_flops(args.model, [int(s) for s in args.sizes.split(",")])
    result["torch_fp32_gflops"] = torch_gemm_gflops(args.threads)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
