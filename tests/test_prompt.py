"""Tokenization in the runtime (tokenizers only) equals SanaPipeline's (transformers)."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge.manifest import load_manifest
from sana_edge.prompt import PromptTokenizer


@pytest.fixture(scope="module")
def runtime_tokenizer(tiny_export):
    manifest = load_manifest(tiny_export)
    model = manifest.model
    return PromptTokenizer(manifest.tokenizer_path, model.complex_human_instruction, model.max_sequence_length)


def _reference(pipe, prompt, chi):
    pipe.tokenizer.padding_side = "right"
    text = pipe._text_preprocessing(prompt)[0]
    if chi:
        chi_text = "\n".join(chi)
        length = len(pipe.tokenizer.encode(chi_text)) + 300 - 2
        text = chi_text + text
    else:
        length = 300
    out = pipe.tokenizer(text, padding="max_length", max_length=length, truncation=True,
                         add_special_tokens=True, return_tensors="np")
    return out.input_ids, out.attention_mask


@pytest.mark.parametrize("prompt", ["a red fox", "  A Cat, Sleeping!  ", "", "ünïcode ☃ prompt"])
def test_positive_and_negative_match_transformers(runtime_tokenizer, diffusers_pipe, prompt):
    chi = runtime_tokenizer.chi.split("\n")
    ids, mask = _reference(diffusers_pipe, prompt, chi)
    ours = runtime_tokenizer.positive(prompt)
    np.testing.assert_array_equal(ours.input_ids, ids)
    np.testing.assert_array_equal(ours.attention_mask, mask)
    ids, mask = _reference(diffusers_pipe, prompt, None)
    ours = runtime_tokenizer.negative(prompt)
    np.testing.assert_array_equal(ours.input_ids, ids)
    np.testing.assert_array_equal(ours.attention_mask, mask)
    assert ours.input_ids.shape == (1, 300)


def test_long_prompt_warns_and_matches_truncation(runtime_tokenizer, diffusers_pipe):
    prompt = "a very long prompt about foxes " * 200
    with pytest.warns(UserWarning, match="truncated"):
        ours = runtime_tokenizer.positive(prompt)
    ids, mask = _reference(diffusers_pipe, prompt, runtime_tokenizer.chi.split("\n"))
    np.testing.assert_array_equal(ours.input_ids, ids)
    assert ours.attention_mask.all()


def test_select_keeps_bos_and_last_positions(runtime_tokenizer):
    length = runtime_tokenizer.chi_tokens + 298
    hidden = np.arange(length, dtype=np.float32).reshape(1, length, 1)
    mask = np.ones((1, length), np.int64)
    selected, selected_mask = runtime_tokenizer.select(hidden, mask)
    assert selected.shape == (1, 300, 1) and selected_mask.shape == (1, 300)
    assert selected[0, 0, 0] == 0 and selected[0, 1, 0] == length - 299 and selected[0, -1, 0] == length - 1
