"""Prompt -> caption embeddings, as diffusers' SanaPipeline computes them (sana_edge.prompt for the
tokenization), over the exported text encoder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .components import TEXT_ENCODER
from .prompt import PromptTokenizer


class PromptEncoder:
    """`encode(prompt, negative)` -> (embeddings, mask), batch [negative, positive] with CFG.

    `session(name)` returns the loaded session of a component (the pipeline's, so the memory
    plan decides residency)."""

    def __init__(self, tokenizer: PromptTokenizer, session: Callable):
        self.tokenizer = tokenizer
        self._session = session

    def _hidden(self, tokens) -> np.ndarray:
        return self._session(TEXT_ENCODER.name).run(
            {"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask})["last_hidden_state"]

    def encode(self, prompt: str, negative_prompt: str | None) -> tuple[np.ndarray, np.ndarray]:
        positive = self.tokenizer.positive(prompt)
        embeds, mask = self.tokenizer.select(self._hidden(positive), positive.attention_mask)
        if negative_prompt is None:
            return embeds, mask
        negative = self.tokenizer.negative(negative_prompt)
        return np.concatenate([self._hidden(negative), embeds]), np.concatenate([negative.attention_mask, mask])
