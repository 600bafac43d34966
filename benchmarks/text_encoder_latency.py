"""Per-prompt text encoding time on full-size Gemma-2-2B (random weights): the old full-sequence path
against the prefix-cached path (sana_edge.text_encoding), per precision, on ONNX Runtime CPU.

    python -m benchmarks.text_encoder_latency --model sana-0.6b --precisions fp32,int8,int4 --repeats 5

One encoding = what the pipeline does per generation with CFG: the positive prompt (instruction +
prompt) and the negative prompt "". Paths, each through `PromptEncoder` with the LRU off:
- `old`: the graph of exports made before the cache (`text_encoder_legacy`): the positive prompt
  padded to instruction + 298 tokens, the negative padded to 300, each a whole sequence;
- `full`: the same padded sequences through the new graph with an empty past (its cost with the
  old feeds, measured side by side with the others);
- `uncached`: the new graph without a prompt cache: only real tokens (no padding), "" computed;
- `cached`: the prompt's own tokens after the cached instruction prefix; "" from the cache.
`old` runs in a phase of its own (one 10 GB fp32 session at a time fits this machine); the
others are interleaved repeat by repeat. Medians. Graphs come from `benchmarks.bench_exports`
(same recipe path as `sana-edge export`), built in a subprocess and cached under build/.

No Gemma tokenizer can be downloaded here, so the ids are synthetic: an instruction of
`--instruction-tokens` tokens (default 230: the 1057-character, 166-word instruction at Gemma's
~1.4 tokens per English word; the real count only moves the old path's sequence length) whose last
token merges with the prompt's first, as "User Prompt: " + "a ..." does, then `--prompt-tokens`.
Cost does not depend on id values. Writes benchmarks/results/text_encoder_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from .bench_exports import DEFAULT_CACHE
from .bench_machine import describe, load_average
from .bench_models import LEGACY_TEXT_ENCODER, MODELS, model_dims

RESULTS = Path(__file__).parent / "results"
PATHS = ("old", "full", "uncached", "cached")
MAX_LEN = 300  # SanaPipeline's max_sequence_length
MODEL_LABELS = {"tiny": "tiny Gemma-2",
                "mid": "Gemma-2-2B layer shapes, 2 of its 26 layers (random weights)"}


class SyntheticTokenizer:
    """PromptTokenizer's interface over synthetic ids (see the module docstring)."""

    def __init__(self, instruction_tokens: int, prompt_tokens: int, vocab: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.chi, self.max_len, self._vocab, self._prompt_tokens = "<instruction>", MAX_LEN, vocab, prompt_tokens
        self._chi_ids = [2] + rng.integers(4, vocab, instruction_tokens - 1).tolist()  # BOS first
        self.text_encoder_length = instruction_tokens + MAX_LEN - 2

    def ids(self, text: str) -> list[int]:
        if not text.startswith(self.chi):
            return [2] + self._words(text, len(text.split()))
        rest = text[len(self.chi):]
        if not rest:
            return list(self._chi_ids)
        # the instruction's last token ("Prompt: ") merges with the prompt's first characters
        return self._chi_ids[:-1] + self._words(rest, 1 + self._prompt_tokens)

    def _words(self, text: str, count: int) -> list[int]:
        return np.random.default_rng(zlib.crc32(text.encode())).integers(4, self._vocab, count).tolist()

    def _padded(self, ids: list[int], length: int):
        from sana_edge.prompt import TokenizedPrompt

        ids = ids[:length]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        return TokenizedPrompt(np.asarray([ids + [0] * (length - len(ids))], np.int64), np.asarray([mask], np.int64), False)

    def positive(self, prompt: str):
        return self._padded(self.ids(self.chi + prompt), self.text_encoder_length)

    def negative(self, prompt: str):
        return self._padded(self.ids(prompt) if prompt else [2], MAX_LEN)

    def select(self, hidden, mask):
        from sana_edge.prompt import PromptTokenizer

        return PromptTokenizer.select(self, hidden, mask)


def _full_sequences(encoder, session):
    """The old feeds (padded whole sequences) through the new graph with an empty past."""
    from sana_edge.components import ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, PAST_KEYS, PAST_VALUES

    def encode(prompt, negative):
        keys, values = encoder.empty_past()
        rows = []
        for tokens in (encoder.tokenizer.negative(negative), encoder.tokenizer.positive(prompt)):
            hidden = session.run({INPUT_IDS: tokens.input_ids, ATTENTION_MASK: tokens.attention_mask,
                                  PAST_KEYS: keys, PAST_VALUES: values})[LAST_HIDDEN_STATE]
            rows.append((hidden, tokens.attention_mask))
        embeds, mask = encoder.tokenizer.select(rows[1][0], rows[1][1])
        return np.concatenate([rows[0][0], embeds]), np.concatenate([rows[0][1], mask])

    return encode


def ensure_graphs(model: str, precisions: list[str], cache: Path, legacy: list[str]) -> dict:
    """{component: {precision: path}}, each exported in a subprocess (its memory goes back to the OS)."""
    graphs = {}
    for component, wanted in (("text_encoder", precisions), (LEGACY_TEXT_ENCODER, legacy)):
        if wanted:
            command = [sys.executable, "-m", "benchmarks.bench_exports", "--model", model, "--components", component,
                       "--precisions", ",".join(wanted), "--cache", str(cache)]
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            graphs.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return graphs


def _timed(encode, prompt: str) -> tuple[float, tuple]:
    start = time.perf_counter()
    result = encode(prompt, "")
    return time.perf_counter() - start, result


def measure(precision: str, graphs: dict, tokenizer, model_values, repeats: int, log) -> dict:
    from sana_edge.backends.onnxruntime_backend import OrtSession
    from sana_edge.metrics import cosine
    from sana_edge.text_encoding import PromptEncoder

    times = {path: [] for path in PATHS}
    prompts = [f"prompt {i}" for i in range(repeats + 1)]  # the first run of each path warms it up
    outputs = {}
    if precision in graphs.get(LEGACY_TEXT_ENCODER, {}):
        session = OrtSession(graphs[LEGACY_TEXT_ENCODER][precision], ["CPUExecutionProvider"])
        old = PromptEncoder(tokenizer, lambda name: session, model=model_values, remember=0)
        for i, prompt in enumerate(prompts):
            seconds, outputs["old"] = _timed(old.encode, prompt)
            times["old"] += [seconds] if i else []
        log(f"{precision} old: median {np.median(times['old']):.3f}s")
        del old, session
        gc.collect()
    session = OrtSession(graphs["text_encoder"][precision], ["CPUExecutionProvider"])
    uncached = PromptEncoder(tokenizer, lambda name: session, model=model_values, remember=0)
    start = time.perf_counter()
    cache = uncached.build_cache()
    cache_seconds = time.perf_counter() - start
    cached = PromptEncoder(tokenizer, lambda name: session, cache=cache, model=model_values, remember=0)
    encoders = {"full": _full_sequences(uncached, session), "uncached": uncached.encode, "cached": cached.encode}
    for i, prompt in enumerate(prompts):
        for path, encode in encoders.items():
            seconds, outputs[path] = _timed(encode, prompt)
            times[path] += [seconds] if i else []
        log(f"{precision} repeat {i}: " + ", ".join(f"{p} {times[p][-1]:.3f}s" for p in encoders if times[p]))
    del cached, uncached, session
    gc.collect()
    keep = outputs["cached"][1].astype(bool)  # the last prompt: every path encoded it
    agreement = {path: cosine(outputs[path][0][keep], outputs["cached"][0][keep]) for path in outputs if path != "cached"}
    medians = {path: float(np.median(t)) for path, t in times.items() if t}
    return {"times_s": times, "median_s": medians, "cache_build_s": cache_seconds,
            "prefix_tokens": cache.prefix_tokens, "cosine_vs_cached": agreement,
            "finite": bool(np.isfinite(outputs["cached"][0]).all())}


def markdown(result: dict) -> str:
    tokens, isa = result["tokens"], result["machine"]["isa"]
    lines = [
        f"# Text encoder per prompt: {result['model_label']}, ONNX Runtime CPU, {result['machine']['threads']} threads",
        "",
        f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores); ISA: {isa}; "
        f"int8 dot-product instructions (VNNI/AMX): {'yes' if result['machine']['int8_dot'] else 'no'}; "
        f"load average before the run: {result['machine']['load_average']}.",
        f"One encoding = positive prompt ({tokens['instruction']} instruction tokens + {tokens['prompt']}-token prompt) "
        f"and negative \"\", as one CFG generation needs; median of {result['repeats']} interleaved repeats.",
        "",
        "| precision | old: full padded sequences, old graph | same feeds, new graph | uncached: real tokens only | "
        "**cached prefix** | cached vs old | cached tokens run |",
        "|---|---|---|---|---|---|---|",
    ]
    for precision, entry in result["precisions"].items():
        m = entry["median_s"]
        versus = "old" if "old" in m else "full"  # no old graph at this precision: the same feeds on the new one
        cells = [f"{m[p]:.3f} s" if p in m else "not built" for p in PATHS]
        run = tokens["instruction"] + tokens["prompt"] - entry["prefix_tokens"]
        lines.append(f"| {precision} | " + " | ".join(cells[:3]) + f" | **{cells[3]}** | "
                     f"{m[versus] / m['cached']:.1f}x faster (vs {versus}) | {run} |")
    lines += ["", f"Old path sequence lengths: positive {tokens['old_positive']}, negative {MAX_LEN}. "
              "Cached path: the prompt's tokens (with the instruction's merged last token) after "
              f"{result['precisions'][next(iter(result['precisions']))]['prefix_tokens']} cached tokens; \"\" from the export.",
              "Cosine of every path to the cached one on the unmasked positions: "
              + "; ".join(f"{p}: " + ", ".join(f"{k} {v:.6f}" for k, v in e["cosine_vs_cached"].items())
                          for p, e in result["precisions"].items()), "",
              f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sana-0.6b", choices=sorted(MODELS))
    parser.add_argument("--precisions", default="fp32,int8,int4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--instruction-tokens", type=int, default=230)
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--legacy-precisions", default="fp32,int8,int4",
                        help="precisions to build the old graph at ('' for none: `full` stands for it); quantizing "
                             "the 10 GB fp32 graph a second time was OOM-killed at 19.6 GB on a shared 24 GB machine")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="text_encoder_latency")
    args = parser.parse_args(argv)
    from sana_edge.cpu import cpu_features
    from sana_edge.manifest import ModelValues

    def log(message):
        print(message, file=sys.stderr, flush=True)

    precisions = args.precisions.split(",")
    legacy = [p for p in args.legacy_precisions.split(",") if p in precisions]
    graphs = ensure_graphs(args.model, precisions, args.cache, legacy)
    dims = model_dims(args.model)
    values = ModelValues(latent_channels=32, out_channels=32, vae_scale_factor=32, vae_scaling_factor=1.0,
                         sample_size=32, max_sequence_length=MAX_LEN, complex_human_instruction=(), timestep_scale=1.0,
                         caption_channels=dims["caption_channels"], text_layers=dims["text_layers"],
                         text_kv_heads=dims["text_kv_heads"], text_head_dim=dims["text_head_dim"])
    tokenizer = SyntheticTokenizer(args.instruction_tokens, args.prompt_tokens, dims["vocab_size"])
    threads = os.cpu_count()
    result = {
        "benchmark": "text_encoder_latency", "model": args.model,
        "model_label": MODEL_LABELS.get(args.model, "Gemma-2-2B (random weights)"),
        "machine": {**describe(threads), "int8_dot": cpu_features().int8_dot, "load_average": load_average()},
        "repeats": args.repeats,
        "tokens": {"instruction": args.instruction_tokens, "prompt": args.prompt_tokens,
                   "old_positive": tokenizer.text_encoder_length, "old_negative": MAX_LEN},
        "precisions": {p: measure(p, graphs, tokenizer, values, args.repeats, log) for p in precisions},
        "command": "python -m benchmarks.text_encoder_latency " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    from sana_edge.fileio import write_json_atomic, write_text_atomic
    from sana_edge.metrics import json_safe

    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"{args.name}.json", json_safe(result))
    text = markdown(result)
    write_text_atomic(args.out / f"{args.name}.md", text)
    print(text)
    return result


if __name__ == "__main__":
    main()
