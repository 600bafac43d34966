"""What every prompt encoding shares, computed once at export and stored in the export folder.

The complex human instruction (CHI) starts every positive prompt and Gemma-2 is causal, so the
hidden states and the K/V cache of the CHI's tokens do not depend on the prompt: the runtime
feeds them as the past of the prompt's own tokens (sana_edge.text_encoding). The default negative
prompt "" is a constant too.

The prompt is appended to the CHI text directly (diffusers: `chi + prompt`), so the last CHI
token(s) can merge with the prompt's first characters. The cache holds only the prefix of token
ids that the CHI shares with every probe continuation, and the runtime still checks each prompt's
ids against it: where a prompt's tokenization departs earlier, the cache is cut to the ids they
share (still exact: causal K/V of a prefix depend on that prefix alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .fileio import write_atomic

CACHE_FILE = "prompt_cache.npz"
# Continuations whose tokenization after the CHI decides how many CHI tokens are safe to cache:
# letters, digits, punctuation, whitespace, non-ASCII (prompts are lower-cased and stripped).
BOUNDARY_PROBES = ("a", "the", "x", "1", ".", ",", "'", '"', "-", "(", ":", " ", "\n", "é", "日本", "🦊")
_ARRAYS = ("prefix_ids", "prefix_hidden", "prefix_keys", "prefix_values", "empty_ids", "empty_hidden")


@dataclass(frozen=True)
class PromptCache:
    prefix_ids: np.ndarray  # (P,) int64: the CHI tokens every positive prompt shares
    prefix_hidden: np.ndarray  # (1, P, caption_channels) float32: their last hidden states
    prefix_keys: np.ndarray  # (layers, 1, kv_heads, P, head_dim) float32: their K cache
    prefix_values: np.ndarray  # same shape: their V cache
    empty_ids: np.ndarray  # (n,) int64: the tokens of the negative prompt ""
    empty_hidden: np.ndarray  # (1, n, caption_channels) float32: their last hidden states

    @property
    def prefix_tokens(self) -> int:
        return int(self.prefix_ids.size)

    def shared_length(self, ids: np.ndarray) -> int:
        """How many leading ids of `ids` equal the cached prefix (at most its length)."""
        n = min(self.prefix_tokens, ids.size)
        differs = np.flatnonzero(ids[:n] != self.prefix_ids[:n])
        return int(differs[0]) if differs.size else n

    def past(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The K/V cache of the first `length` prefix tokens."""
        if length == self.prefix_tokens:
            return self.prefix_keys, self.prefix_values
        return (np.ascontiguousarray(self.prefix_keys[:, :, :, :length]),
                np.ascontiguousarray(self.prefix_values[:, :, :, :length]))

    def save(self, path: Path) -> Path:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a handle: np.savez would append .npz to a path
                np.savez(handle, **{name: getattr(self, name) for name in _ARRAYS})  # uncompressed: loads fast

        return write_atomic(path, write)


def instruction_prefix(tokenizer) -> list[int]:
    """The leading CHI token ids that `tokenizer.ids(chi + probe)` keeps for every probe."""
    prefix = tokenizer.ids(tokenizer.chi)
    for probe in BOUNDARY_PROBES:
        ids = tokenizer.ids(tokenizer.chi + probe)
        shared = 0
        while shared < min(len(prefix), len(ids)) and prefix[shared] == ids[shared]:
            shared += 1
        prefix = prefix[:shared]
    return prefix


def load_prompt_cache(path: Path, model) -> PromptCache:
    """Read and check a cache file against the export's model values (`ModelValues`)."""
    fix = "re-run `sana-edge export` to rebuild it"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path} is not a readable prompt cache ({type(exc).__name__}); {fix}") from None
    cache = PromptCache(**arrays)
    p, n = cache.prefix_tokens, cache.empty_ids.size
    kv = (model.text_layers, 1, model.text_kv_heads, p, model.text_head_dim)
    expected = {"prefix_hidden": (1, p, model.caption_channels), "prefix_keys": kv, "prefix_values": kv,
                "empty_hidden": (1, n, model.caption_channels)}
    for name, shape in expected.items():
        array = getattr(cache, name)
        if array.shape != shape or array.dtype != np.float32 or not np.isfinite(array).all():
            raise UserError(f"{path}: {name} has shape {array.shape} ({array.dtype}), the model needs {shape} "
                            f"float32 and finite values; {fix}")
    if cache.prefix_ids.ndim != 1 or cache.empty_ids.ndim != 1 or cache.prefix_ids.dtype.kind != "i":
        raise UserError(f"{path}: the cached token ids are not 1-D integer arrays; {fix}")
    return cache
