"""The text encoder's prompt cache: cached encoding equals diffusers' full encoding on every position
the DiT attends to, the token boundary falls back exactly, the "" negative is the export's constant,
prompts are remembered in a bounded LRU, exports made before the cache still run, and the
quantization recipe treats the new graph as the old one."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from sana_edge import SanaEdgePipeline
from sana_edge.components import LEGACY_TEXT_ENCODER, TEXT_ENCODER
from sana_edge.errors import UserError
from sana_edge.manifest import load_manifest, sha256_file
from sana_edge.metrics import cosine
from sana_edge.prompt_cache import CACHE_FILE, PromptCache, load_prompt_cache
from sana_edge.text_encoding import PromptEncoder

LONG = " ".join(["a watercolor landscape of mountains and a quiet lake"] * 40)  # truncated at 300 tokens
PROMPTS = ["a red fox sitting in fresh snow", "1950s diner, neon", "", "été à paris", LONG]
NEGATIVE = "blurry"


@pytest.fixture(scope="module")
def pipe(tiny_export):
    return SanaEdgePipeline.from_export(tiny_export)


@pytest.fixture(scope="module")
def legacy_export(tiny_export, diffusers_pipe, tmp_path_factory):
    """`tiny_export` as sana-edge wrote it before the prefix cache: full-sequence text encoder, no
    prompt cache, no K/V shape in the model values."""
    from sana_edge.export.onnx_export import export_component
    from sana_edge.export.wrappers import LegacyTextEncoderWrapper

    out = tmp_path_factory.mktemp("legacy") / "tiny-fp32-legacy"
    shutil.copytree(tiny_export, out)
    manifest = json.loads((out / "manifest.json").read_text())
    dims = load_manifest(out).model.dims()
    graph = out / LEGACY_TEXT_ENCODER.file
    export_component(LEGACY_TEXT_ENCODER, LegacyTextEncoderWrapper(diffusers_pipe).eval(), dims, graph)
    entry = manifest["components"]["text_encoder"]
    entry.update(sha256=sha256_file(graph), bytes=graph.stat().st_size,
                 inputs=[{"name": t.name, "dtype": t.dtype, "axes": list(t.axes)} for t in LEGACY_TEXT_ENCODER.inputs],
                 outputs=[{"name": t.name, "dtype": t.dtype, "axes": list(t.axes)} for t in LEGACY_TEXT_ENCODER.outputs])
    del manifest["prompt_cache"]
    for key in ("text_layers", "text_kv_heads", "text_head_dim"):
        del manifest["model"][key]
    (out / CACHE_FILE).unlink()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


class CountingSession:
    """The pipeline's sessions, counting text encoder runs."""

    def __init__(self, pipe):
        self.pipe, self.runs = pipe, 0

    def __call__(self, name):
        session = self.pipe.session(name)
        counter = self

        class Counted:
            input_names, output_names = session.input_names, session.output_names

            def run(self, feeds):
                counter.runs += 1
                return session.run(feeds)

        return Counted()


def _encoder(pipe, cache="export", remember=0, session=None):
    cache = pipe.prompt_encoder.cache if cache == "export" else cache
    return PromptEncoder(pipe.tokenizer, session or pipe.session, cache=cache, model=pipe.manifest.model,
                         remember=remember)


def _diffusers_embeddings(diffusers_pipe, prompt):
    import torch
    from diffusers import SanaPipeline

    from sana_edge.export.checkpoint import default_complex_human_instruction

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embeds, mask, negative, negative_mask = diffusers_pipe.encode_prompt(
            prompt, negative_prompt=NEGATIVE, complex_human_instruction=default_complex_human_instruction(SanaPipeline))
    return torch.cat([negative, embeds]).numpy(), torch.cat([negative_mask, mask]).numpy()


def _agree(got, expected, mask, threshold=0.99999):
    keep = mask.astype(bool)
    assert np.isfinite(got).all()
    assert cosine(got[keep], expected[keep]) >= threshold


@pytest.mark.parametrize("prompt", PROMPTS, ids=["fox", "digits", "empty", "accents", "truncated"])
def test_cached_encoding_equals_diffusers_on_every_unmasked_position(pipe, diffusers_pipe, prompt):
    assert pipe.prompt_encoder.cache is not None and pipe.prompt_encoder.cache.prefix_tokens > 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation warning of the long prompt
        embeds, mask = _encoder(pipe).encode(prompt, NEGATIVE)
        uncached, _ = _encoder(pipe, cache=None).encode(prompt, NEGATIVE)
    expected, expected_mask = _diffusers_embeddings(diffusers_pipe, prompt)
    np.testing.assert_array_equal(mask, expected_mask)
    for row in range(2):  # negative, positive
        _agree(embeds[row], expected[row], mask[row])
        _agree(embeds[row], uncached[row], mask[row])
    assert not embeds[~mask.astype(bool)].any()  # padding is not computed: zeros, never reaching the image


def test_prompt_departing_from_the_cached_prefix_falls_back_to_the_ids_it_shares(pipe):
    encoder, tokenizer = _encoder(pipe, cache=None), pipe.tokenizer
    # A cache over every instruction token, including the last one ("...Prompt: "), which the
    # prompt's first word merges with: the shared ids end one token earlier.
    every = np.asarray(tokenizer.ids(tokenizer.chi), np.int64)
    hidden, keys, values = encoder.run(every[None], *encoder.empty_past())
    exported = pipe.prompt_encoder.cache
    too_long = PromptCache(every, hidden, keys, values, exported.empty_ids, exported.empty_hidden)
    tokens = tokenizer.positive(PROMPTS[0])
    ids = tokens.input_ids[0, : int(tokens.attention_mask.sum())]
    assert too_long.shared_length(ids) == exported.prefix_tokens < too_long.prefix_tokens
    embeds, mask = _encoder(pipe, cache=too_long).encode(PROMPTS[0], None)
    expected, _ = encoder.encode(PROMPTS[0], None)
    _agree(embeds[0], expected[0], mask[0])


def test_empty_negative_is_the_exports_constant(pipe):
    cache = pipe.prompt_encoder.cache
    computed = _encoder(pipe, cache=None).run(cache.empty_ids[None], *_encoder(pipe).empty_past())[0]
    np.testing.assert_allclose(cache.empty_hidden, computed, rtol=0, atol=1e-6)
    counting = CountingSession(pipe)
    embeds, mask = _encoder(pipe, session=counting).encode("a cat", "")
    assert counting.runs == 1  # the positive prompt's own tokens; "" came from the export
    expected, _ = _encoder(pipe, cache=None).encode("a cat", "")
    _agree(embeds[0], expected[0], mask[0])


def test_prompts_are_remembered_in_a_bounded_lru(pipe):
    counting = CountingSession(pipe)
    encoder = _encoder(pipe, remember=3, session=counting)
    first, _ = encoder.encode("a red fox", NEGATIVE)
    assert counting.runs == 2
    again, _ = encoder.encode("a red fox", NEGATIVE)
    assert counting.runs == 2 and np.array_equal(first, again)
    again[:] = 0  # what a caller gets is its own copy
    assert np.array_equal(encoder.encode("a red fox", NEGATIVE)[0], first)
    encoder.encode("a cat", None)
    encoder.encode("a dog", None)  # a fourth prompt: the least recently used ("a red fox") goes
    runs = counting.runs
    encoder.encode("a red fox", None)
    assert counting.runs == runs + 1
    encoder.encode("a cat", None)
    assert counting.runs == runs + 1


def test_export_made_before_the_cache_still_runs(legacy_export, pipe):
    old = SanaEdgePipeline.from_export(legacy_export)
    assert old.prompt_encoder.cache is None and old.manifest.prompt_cache_path is None
    latents = np.random.default_rng(1).standard_normal((1, 32, 6, 4)).astype(np.float32)
    images = [np.asarray(p(PROMPTS[0], negative_prompt=NEGATIVE, height=192, width=128, steps=4, latents=latents))
              for p in (old, pipe)]
    assert np.abs(images[0].astype(int) - images[1].astype(int)).max() <= 2
    assert images[0].std() > 1


def test_tampered_or_malformed_cache_is_refused(tiny_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    manifest = load_manifest(copy)
    (copy / CACHE_FILE).write_bytes(b"not a cache")
    with pytest.raises(UserError, match=f"{CACHE_FILE} .*does not match the sha256"):
        load_manifest(copy)
    with pytest.raises(UserError, match="not a readable prompt cache"):
        load_prompt_cache(copy / CACHE_FILE, manifest.model)
    small = manifest.model.__class__(**{**manifest.model.__dict__, "text_layers": manifest.model.text_layers + 1})
    with pytest.raises(UserError, match="prefix_keys has shape"):
        load_prompt_cache(tiny_export / CACHE_FILE, small)


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_weight_only_recipe_quantizes_the_same_weights_in_the_old_and_new_graphs(legacy_export, tiny_export, precision):
    import onnx

    from sana_edge.quant import handlers  # noqa: F401  (registers the handlers)
    from sana_edge.quant.configs import build_recipe, handler_for

    config = build_recipe(precision)["text_encoder"]
    quantized = {}
    for export in (legacy_export, tiny_export):
        model, _ = handler_for(config)(onnx.load(str(export / TEXT_ENCODER.file)), config, None)
        quantized[export] = {(n.op_type, n.name) for n in model.graph.node if "Quantized" in n.op_type or "NBits" in n.op_type}
    assert quantized[legacy_export] and quantized[legacy_export] == quantized[tiny_export]
