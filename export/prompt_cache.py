"""Exporter step: the text encoder's prompt cache (sana_edge.prompt_cache), computed with the
export's final graph (after quantization), so cached encoding equals uncached for that export.

Checked before it is written: probe prompts encoded through the cache must match the same graph
encoding their whole sequence, and the "" negative constant must match computing it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sana_edge.components import TEXT_ENCODER
from sana_edge.manifest import ModelValues, file_record
from sana_edge.metrics import cosine
from sana_edge.prompt import PromptTokenizer
from sana_edge.prompt_cache import CACHE_FILE
from sana_edge.text_encoding import PromptEncoder

from .validate import ExportValidationError

# Prompts whose first characters sit differently against the instruction's last token.
CHECK_PROMPTS = ("a red fox sitting in fresh snow", "1950s diner, neon", "\u00e9t\u00e9 \u00e0 paris")
MIN_COSINE = 0.9999  # the same graph both ways: only the summation order differs


def write_prompt_cache(stage: Path, tokenizer_file: str, model: ModelValues, target: str = "ort") -> dict:
    """Build, check and write the prompt cache of the text encoder graph in `stage`; its record.
    `target` "openvino": the graph is the export's IR, run by OpenVINO as `sana-edge run` will."""
    tokenizer = PromptTokenizer(stage / tokenizer_file, model.complex_human_instruction, model.max_sequence_length)
    session = _final_session(stage, target)
    try:
        uncached = PromptEncoder(tokenizer, lambda name: session, model=model, remember=0)
        cache = uncached.build_cache()
        cached = PromptEncoder(tokenizer, lambda name: session, cache=cache, model=model, remember=0)
        check = {prompt: _agreement(uncached, cached, prompt, None) for prompt in CHECK_PROMPTS}
        check["negative \"\""] = _agreement(uncached, cached, "x", "")
    finally:
        session.close()
    worst = min(check, key=check.get)
    if not check[worst] >= MIN_COSINE:
        raise ExportValidationError(
            f"the text encoder's prompt cache disagrees with encoding the whole prompt ({worst!r}: cosine "
            f"{check[worst]:.6f}, need >= {MIN_COSINE}); the export was not written; report this with the checkpoint")
    path = cache.save(stage / CACHE_FILE)
    return file_record(path, {"prefix_tokens": cache.prefix_tokens, "empty_negative_tokens": int(cache.empty_ids.size),
                              "check_cosine": {k: round(v, 8) for k, v in check.items()}})


def _final_session(stage: Path, target: str):
    if target == "openvino":
        from sana_edge.backends.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(cache=False).load(stage / f"{TEXT_ENCODER.name}.xml", component=TEXT_ENCODER.name)
    from sana_edge.backends.onnxruntime_backend import OrtSession

    return OrtSession(stage / TEXT_ENCODER.file, ["CPUExecutionProvider"])


def _agreement(uncached: PromptEncoder, cached: PromptEncoder, prompt: str, negative: str | None) -> float:
    """Cosine of the two encodings over the positions the DiT attends to (NaN if any is non-finite)."""
    (a, mask), (b, _) = uncached.encode(prompt, negative), cached.encode(prompt, negative)
    rows = slice(0, 1) if negative is not None else slice(None)  # "" is the batch's first row
    keep = mask[rows].astype(bool)
    a, b = a[rows][keep], b[rows][keep]
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(cosine(a, b))
