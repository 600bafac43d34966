"""Build a tiny random-weight SANA checkpoint in diffusers layout.

Real diffusers/transformers classes at toy sizes, a Gemma-style BPE tokenizer trained locally on
a small corpus (with Gemma's special ids <pad>=0 <eos>=1 <bos>=2 <unk>=3 and byte fallback), and
Sana's Flow-DPM-Solver scheduler config. Tests and `make demo` use it; `sana-edge init-tiny DIR`
exposes it. Deterministic for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import configs

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]

_CORPUS_PROMPTS = [
    "a red fox sitting in fresh snow at sunrise",
    "a small green triangle at the top left on a white background",
    "a large blue circle in the centre on a yellow background",
    "a cyberpunk city street at night with neon signs and rain",
    "a bowl of ramen with a soft boiled egg, studio lighting",
    "portrait of an old sailor with a grey beard, oil painting",
    "a watercolor landscape of mountains and a quiet lake",
    "a cat sleeping on a warm sunny windowsill",
]


def _train_tokenizer(corpus: list[str], vocab_size: int, phrase_merges: tuple[tuple[str, str], ...] = ()):
    """Train a byte-fallback BPE with Gemma's normalisation; return a transformers tokenizer.

    `phrase_merges` are appended after the learned merges (lowest priority, so both halves are
    whole tokens first): Gemma's tokenizer does not split on spaces, so a pair like
    ("\u2581blue", "\u2581background") becomes one token for the phrase.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="\u2581", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + BYTE_TOKENS, show_progress=False
    )
    backend.train_from_iterator(corpus, trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    vocab = model["vocab"]
    for left, right in phrase_merges:
        missing = [piece for piece in (left, right) if piece not in vocab]
        if missing:
            raise ValueError(f"phrase merge {left + right!r}: {missing} not whole tokens; raise vocab_size")
        vocab.setdefault(left + right, len(vocab))
        merges.append((left, right))
    # add_bos_token=True writes a BOS post-processor into tokenizer.json, as Gemma's has.
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)


def _corpus() -> list[str]:
    from diffusers import SanaPipeline

    from .checkpoint import default_complex_human_instruction

    chi = "\n".join(default_complex_human_instruction(SanaPipeline))
    return [chi] * 4 + _CORPUS_PROMPTS * 4


def build_tiny_pipeline(seed: int = 0, preset: str = "tiny"):
    """Return a diffusers SanaPipeline with random weights: "tiny" (tests, demo) or "mid" (the
    full Sana-0.6B width with 4 layers and a 2-layer full-width Gemma-2, for quantization);
    "mid-sprint" is a SanaSprintPipeline of that size."""
    import torch
    from diffusers import (AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaSprintPipeline,
                           SanaTransformer2DModel, SCMScheduler)
    from transformers import Gemma2Config, Gemma2Model

    from .variants import SCM_SCHEDULER_CONFIG

    preset_configs = configs.PRESETS[preset]
    tokenizer = _train_tokenizer(_corpus(), vocab_size=min(preset_configs["text_encoder"]["vocab_size"],
                                                           configs.TOKENIZER_VOCAB))
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(**preset_configs["transformer"])
    vae = AutoencoderDC(**preset_configs["vae"])
    gemma_config = Gemma2Config(**preset_configs["text_encoder"])
    gemma_config._attn_implementation = "eager"  # logit soft-capping needs eager attention
    text_encoder = Gemma2Model(gemma_config)
    sprint = preset_configs.get("sprint", False)
    if sprint:
        scheduler = SCMScheduler.from_config(SCM_SCHEDULER_CONFIG)
    else:
        scheduler = DPMSolverMultistepScheduler.from_config(configs.SANA_SCHEDULER_CONFIG)
    pipe = (SanaSprintPipeline if sprint else SanaPipeline)(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
        transformer=transformer, scheduler=scheduler,
    )
    return pipe


def write_tiny_checkpoint(out_dir: str | Path, seed: int = 0, preset: str = "tiny", variant: str | None = None,
                          base=None) -> Path:
    """Save a random-weight SANA checkpoint to `out_dir` (diffusers layout) and return the path.
    `variant` (export/variants.py, e.g. "sprint-0.6b"): that published checkpoint's settings at a
    tiny width, over `base`'s (or a fresh tiny pipeline's) tokenizer, text encoder and VAE."""
    out = Path(out_dir)
    pipe = base if base is not None and variant is not None else build_tiny_pipeline(seed, preset)
    if variant is not None:
        from .variants import build_variant_pipeline

        pipe = build_variant_pipeline(variant, pipe, seed)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
