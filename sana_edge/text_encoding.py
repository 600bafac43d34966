"""Prompt -> caption embeddings, as diffusers' SanaPipeline computes them (sana_edge.prompt for the
tokenization), over the exported text encoder, without recomputing what does not change:

- the instruction prefix's K/V cache and hidden states come from the export's prompt cache
  (sana_edge.prompt_cache): only the prompt's own tokens run through the graph;
- padded positions are not computed: the DiT's cross-attention masks them out, so their hidden
  states never reach the image; they are zeros (finite, as the mask needs);
- the negative prompt "" is a constant of the export; other prompts are remembered in the process
  (a bounded LRU), so a loop over seeds encodes its prompts once.

Exports made before the prefix cache (a text encoder without past inputs) take the old path:
whole padded sequences.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from .components import (ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, LEGACY_TEXT_ENCODER, NEW_KEYS, NEW_VALUES,
                         PAST_KEYS, PAST_VALUES, TEXT_ENCODER, declaration_for)
from .prompt import PromptTokenizer, TokenizedPrompt
from .prompt_cache import PromptCache, instruction_prefix

REMEMBERED_PROMPTS = 16  # encoded prompts kept per process: 2.7 MB each at full size


class PromptEncoder:
    """`encode(prompt, negative)` -> (embeddings, mask), batch [negative, positive] with CFG.

    `session(name)` returns the loaded session of a component (the pipeline's, so the memory
    plan decides residency); it is asked for only when something must be computed. `model`
    (ModelValues) gives the K/V cache shape; `cache` is the export's prompt cache, if any."""

    def __init__(self, tokenizer: PromptTokenizer, session: Callable, cache: PromptCache | None = None,
                 model=None, remember: int = REMEMBERED_PROMPTS):
        self.tokenizer = tokenizer
        self._session = session
        self.cache = cache
        self._model = model
        self._remember = remember
        self._remembered: OrderedDict = OrderedDict()

    def encode(self, prompt: str, negative_prompt: str | None) -> tuple[np.ndarray, np.ndarray]:
        embeds, mask = self._recall(("positive", prompt), lambda: self._positive(prompt))
        if negative_prompt is None:
            return embeds, mask
        negative, negative_mask = self._recall(("negative", negative_prompt), lambda: self._negative(negative_prompt))
        return np.concatenate([negative, embeds]), np.concatenate([negative_mask, mask])

    # -- the two prompts ----------------------------------------------------------------------

    def _positive(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        tokens = self.tokenizer.positive(prompt)
        return self.tokenizer.select(self._hidden(tokens, self.cache), tokens.attention_mask)

    def _negative(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        tokens = self.tokenizer.negative(prompt)
        real = _real_ids(tokens)
        if self.cache is not None and np.array_equal(real, self.cache.empty_ids):
            hidden = np.zeros(tokens.input_ids.shape + (self.cache.empty_hidden.shape[-1],), np.float32)
            hidden[:, : real.size] = self.cache.empty_hidden
            return hidden, tokens.attention_mask
        return self._hidden(tokens, None), tokens.attention_mask

    def _hidden(self, tokens: TokenizedPrompt, cache: PromptCache | None) -> np.ndarray:
        """Last hidden states of a padded sequence: the cached prefix, the rest computed, padding zero."""
        if cache is None and self._legacy_graph():
            return self._session(TEXT_ENCODER.name).run(
                {INPUT_IDS: tokens.input_ids, ATTENTION_MASK: tokens.attention_mask})[LAST_HIDDEN_STATE]
        real = _real_ids(tokens)
        start = cache.shared_length(real) if cache is not None else 0
        hidden = np.zeros(tokens.input_ids.shape + (self._model.caption_channels,), np.float32)
        if start:
            hidden[:, :start] = cache.prefix_hidden[:, :start]
        if real.size > start:
            past = cache.past(start) if start else self.empty_past()
            hidden[:, start: real.size] = self.run(real[None, start:], *past)[0]
        return hidden

    # -- the graph ----------------------------------------------------------------------------

    def run(self, ids: np.ndarray, past_keys: np.ndarray, past_values: np.ndarray):
        """(hidden states, new keys, new values) of `ids` (1, n) after the past K/V."""
        feeds = {INPUT_IDS: ids.astype(np.int64),
                 ATTENTION_MASK: np.ones((1, past_keys.shape[3] + ids.shape[1]), np.int64),
                 PAST_KEYS: past_keys, PAST_VALUES: past_values}
        out = self._session(TEXT_ENCODER.name).run(feeds)
        return out[LAST_HIDDEN_STATE], out[NEW_KEYS], out[NEW_VALUES]

    def empty_past(self) -> tuple[np.ndarray, np.ndarray]:
        model = self._model
        empty = np.zeros((model.text_layers, 1, model.text_kv_heads, 0, model.text_head_dim), np.float32)
        return empty, empty

    def build_cache(self) -> PromptCache:
        """The prompt cache of this tokenizer and graph (the exporter runs it on the final graph)."""
        prefix = np.asarray(instruction_prefix(self.tokenizer), np.int64)
        hidden, keys, values = self.run(prefix[None], *self.empty_past())
        empty_ids = _real_ids(self.tokenizer.negative(""))
        empty_hidden = self.run(empty_ids[None], *self.empty_past())[0]
        return PromptCache(prefix, hidden, keys, values, empty_ids, empty_hidden)

    def _legacy_graph(self) -> bool:
        session = self._session(TEXT_ENCODER.name)
        return declaration_for(TEXT_ENCODER.name, session.input_names) is LEGACY_TEXT_ENCODER

    # -- remembered prompts -------------------------------------------------------------------

    def _recall(self, key: tuple, compute: Callable) -> tuple[np.ndarray, np.ndarray]:
        if key in self._remembered:
            self._remembered.move_to_end(key)
            value = self._remembered[key]
        else:
            value = self._remembered[key] = compute()
            while len(self._remembered) > self._remember:
                self._remembered.popitem(last=False)
        embeds, mask = value
        return embeds.copy(), mask.copy()  # callers may write to what they get


def _real_ids(tokens: TokenizedPrompt) -> np.ndarray:
    """The ids of the real tokens (right padding: a prefix of the row)."""
    return tokens.input_ids[0, : int(tokens.attention_mask[0].sum())]
