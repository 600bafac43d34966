"""The text side of shapes-SANA training: tokenizer, caption phrasing, and caption embeddings
computed exactly as the runtime computes them, with gradients, so the Gemma-2 text encoder trains
jointly with the DiT.

What the runtime feeds (sana_edge.prompt, diffusers' SanaPipeline): the positive prompt is
lower-cased, prefixed with the complex human instruction (CHI) and run through the text encoder;
the DiT gets position 0 (BOS) and the last 299 positions, i.e. BOS + the caption's tokens (the
CHI's final space merges into the caption's first word, so the kept window starts at the
caption). The negative (empty) prompt is encoded without CHI: BOS alone.

Gemma-2 is causal, so the CHI prefix's states are the same for every caption: `CaptionEncoder`
runs the prefix once (batch 1, with a KV cache), repeats its cache over the batch and runs only
the caption tokens. That is the same computation as the full sequence (tested against the
runtime's tokenizer + select path), ~10x cheaper than running 160 CHI tokens per caption.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sana_edge import shape_captions, shapes


def phrase_merges() -> tuple[tuple[str, str], ...]:
    """One token per "<colour> background": the background's colour is then a different token
    from the shape's ("red" vs "red background") in every phrasing and word order."""
    return tuple((f"\u2581{colour}", "\u2581background") for colour in shapes.PALETTE)


def training_caption(scene: shapes.Scene, rng: np.random.Generator, p_grammar: float) -> str:
    """A caption for a training scene: the canonical grammar with probability `p_grammar`, else a
    paraphrase in a training template (no held-out template, no held-out word pair)."""
    if rng.random() < p_grammar:
        return shape_captions.style(scene.caption, rng)
    return shape_captions.paraphrase(scene, rng)


def _detach_punctuation(text: str) -> str:
    return re.sub(r"([,.!?;:])", r" \1", text)


def build_tokenizer(chi: list[str], seed: int, vocab_size: int = 1024):
    """BPE on the CHI plus training phrasings (Gemma's special ids, byte fallback).

    Gemma's tokenizer does not split words from punctuation, so a BPE trained on "circle," and
    "background!" learns those as tokens of their own: the same word would be several unrelated
    tokens. Trained with punctuation detached, no merge joins a letter and a punctuation mark,
    and "circle," reads as "circle" + "," whatever the user types (the runtime's tokenizer is
    Gemma's, unchanged)."""
    from .tiny import _train_tokenizer

    rng = np.random.default_rng(seed + 5)
    captions = [training_caption(shapes.sample_scene(rng), rng, 0.3).lower() for _ in range(4000)]
    corpus = [_detach_punctuation("\n".join(chi))] * 4 + [_detach_punctuation(c) for c in captions]
    return _train_tokenizer(corpus, vocab_size, phrase_merges())


class CaptionEncoder:
    """Caption embeddings as the runtime makes them, differentiable through the text encoder."""

    def __init__(self, tokenizer_json: Path, chi: list[str], max_sequence_length: int = 300):
        from sana_edge.prompt import PromptTokenizer

        self.tokenizer = PromptTokenizer(tokenizer_json, chi, max_sequence_length)
        # Positions kept by SANA's select: 0 and everything from here on (the caption).
        self.start = self.tokenizer.text_encoder_length - (max_sequence_length - 1)
        self.prefix: np.ndarray | None = None

    def token_ids(self, caption: str) -> np.ndarray:
        """The caption's own ids (after the shared CHI prefix), unpadded."""
        tokens = self.tokenizer.positive(caption)
        ids = tokens.input_ids[0, : int(tokens.attention_mask.sum())]
        if self.prefix is None:
            self.prefix = ids[: self.start].copy()
        elif not np.array_equal(ids[: self.start], self.prefix):
            raise ValueError(f"caption {caption!r} changes the instruction prefix's tokens")
        return ids[self.start:]

    def __call__(self, text_encoder, captions: list[str], drop):
        """(B, L, C) embeddings and (B, L) mask for the DiT: BOS + caption positions; rows with
        `drop[i]` get the empty negative prompt's embedding (BOS alone), as CFG feeds it."""
        import torch

        rows = [self.token_ids(c) for c in captions]  # also sets self.prefix
        prefix = torch.from_numpy(self.prefix)[None]
        out = text_encoder(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True)
        cache = out.cache
        cache.batch_repeat_interleave(len(rows))
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.from_numpy(row)
            mask[i, : len(row)] = 0 if drop[i] else 1
        full_mask = torch.cat([torch.ones(len(rows), prefix.shape[1], dtype=torch.long), mask], 1)
        hidden = text_encoder(input_ids=ids, attention_mask=full_mask, cache=cache).last_hidden_state
        bos = out.last_hidden_state[:, :1].expand(len(rows), -1, -1)
        embeds = torch.cat([bos, hidden], 1)
        keep = torch.cat([torch.ones(len(rows), 1, dtype=torch.long), mask], 1)
        return embeds * keep[..., None], keep.float()
