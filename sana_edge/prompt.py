"""Prompt handling exactly as diffusers' SanaPipeline, on the `tokenizers` library alone.

Positive prompt: lower-cased and stripped, prefixed with the complex human instruction (CHI),
tokenized to len(CHI tokens) + max_len - 2 with right padding; after the text encoder, keep token
0 (BOS) and the last max_len - 1 positions. Negative prompt: no CHI, padded to max_len.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError


def read_prompt_file(path: Path, what: str = "prompts") -> list[str]:
    """One prompt per line; blank lines and lines starting with # are ignored."""
    path = Path(path)
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"{what} file '{path}' {problem}; pass a text file with one prompt per line")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} file '{path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise UserError(f"{what} file '{path}' holds no prompts (blank lines and # comments are ignored); add one prompt per line")
    return prompts


@dataclass
class TokenizedPrompt:
    input_ids: np.ndarray  # (1, L) int64
    attention_mask: np.ndarray  # (1, L) int64
    truncated: bool


class PromptTokenizer:
    def __init__(self, tokenizer_json: Path, complex_human_instruction: list[str], max_sequence_length: int):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.pad_id = self._tokenizer.token_to_id("<pad>")
        if self.pad_id is None:
            self.pad_id = 0
        self.max_len = max_sequence_length
        self.chi = "\n".join(complex_human_instruction) if complex_human_instruction else ""
        self.chi_tokens = len(self._tokenizer.encode(self.chi).ids) if self.chi else 0

    def ids(self, text: str) -> list[int]:
        """Token ids of `text` as the text encoder sees them (BOS first, no padding)."""
        return self._tokenizer.encode(text).ids

    def _encode(self, text: str, length: int) -> TokenizedPrompt:
        ids = self.ids(text)
        truncated = len(ids) > length
        # Truncation keeps the head, as transformers' right truncation does (BOS stays first).
        ids = ids[:length]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        ids = ids + [self.pad_id] * (length - len(ids))
        return TokenizedPrompt(
            np.asarray([ids], dtype=np.int64), np.asarray([mask], dtype=np.int64), truncated
        )

    @property
    def text_encoder_length(self) -> int:
        """The longest sequence the text encoder sees (the positive prompt with the instruction)."""
        return self.chi_tokens + self.max_len - 2 if self.chi else self.max_len

    def positive(self, prompt: str) -> TokenizedPrompt:
        text = prompt.lower().strip()
        if self.chi:
            tokens = self._encode(self.chi + text, self.text_encoder_length)
        else:
            tokens = self._encode(text, self.max_len)
        if tokens.truncated:
            warnings.warn(
                f"prompt is longer than the model's {self.max_len}-token limit and was truncated",
                stacklevel=3,
            )
        return tokens

    def negative(self, prompt: str) -> TokenizedPrompt:
        return self._encode(prompt.lower().strip(), self.max_len)

    def select(self, hidden: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep BOS and the last max_len - 1 positions (SanaPipeline's select_index)."""
        index = [0] + list(range(hidden.shape[1] - self.max_len + 1, hidden.shape[1]))
        return hidden[:, index], mask[:, index]
