"""The latency benchmark cannot rot: its quick mode (tiny model, one size, 2 repeats) runs end to end
through export, worker processes, summary, markdown and plot, and its JSON keeps its schema."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_cached_path import CACHED_STAGES

BACKENDS = ["torch-fp32", "ort-fp32", "ort-int8", "ort-int4", "ov-fp32", "ov-int8", "ov-int4"]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.timeout(600)
def test_quick_benchmark_writes_json_markdown_and_plot(tmp_path):
    from benchmarks.latency import main

    out = tmp_path / "results"
    result = main(["--quick", "--backends", ",".join(BACKENDS), "--out", str(out), "--cache", str(tmp_path / "cache")])

    stem = result["machine"]["tag"]
    assert stem.endswith("-tiny-quick")
    data = json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| torch-fp32 |" in (out / f"{stem}.md").read_text()

    for key in ("machine", "versions", "command", "settings", "baseline", "backends", "matmul_rate",
                "flops", "measurements", "summary", "duration_s"):
        assert key in data, key
    assert data["machine"]["cpu"] and _positive(data["machine"]["threads"])
    assert data["backends"] == BACKENDS and data["baseline"] == "torch-fp32"
    for key in ("numpy_fp32_gflops", "torch_fp32_gflops", "ort_fp32_gflops", "fp32_gflops"):
        assert _positive(data["matmul_rate"][key]), key

    # every (stage, backend) measured once per size; text encoding once in all; the ORT backends
    # also run sana-edge's own path (prompt after the cached instruction, caption K/V, split step)
    cached = [b for b in BACKENDS if b.startswith("ort-")]
    assert len(data["measurements"]) == len(BACKENDS) * 3 + len(cached) * 3
    for entry in data["measurements"]:
        assert entry["error"] is None, entry
        assert len(entry["times_s"]) == 2 and all(_positive(t) for t in entry["times_s"])
        assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
        keys = ("peak_rss_mb", "cold_s") if entry["stage"] in CACHED_STAGES else ("peak_rss_mb", "flops", "floor_s", "x_from_floor")
        for key in keys:
            assert _positive(entry[key]), (key, entry)
        if entry["backend"].startswith("ort-") and not entry["shared_with"]:  # a second fresh worker, ORT cache warm
            assert _positive(entry["recold_s"]), entry
        assert entry["output_finite"] is True
    shared = {(e["backend"], e["stage"]): e["shared_with"] for e in data["measurements"] if e["shared_with"]}
    assert shared == {("ort-int8", "decode"): "ort-fp32", ("ort-int4", "decode"): "ort-fp32",
                      ("ov-int8", "decode"): "ov-fp32", ("ov-int4", "decode"): "ov-fp32",
                      ("ov-int4", "text_encoder"): "ov-int8"}  # the openvino recipe's 8-bit text encoder
    assert data["machine"]["isa"] and all(entry["load_avg"] for entry in data["measurements"])
    precisions = {(e["backend"], e["stage"]): e["runtime_precisions"] for e in data["measurements"] if e.get("runtime_precisions")}
    assert set(precisions[("ov-fp32", "step")]) <= {"FullyConnected f32", "MatMul f32", "Convolution f32"}
    assert any(k.endswith((" u8", " i8")) for k in precisions[("ov-int8", "step")])  # NNCF int8 runs as int8
    assert any(k.endswith(" i4") for k in precisions[("ov-int4", "step")])

    rows = data["summary"]["512"]
    assert set(rows) == set(BACKENDS)
    for backend, row in rows.items():
        assert _positive(row["total_s"])
        for stage, ratio in row["speedup_vs_baseline"].items():
            assert _positive(ratio), (backend, stage)
        assert row["dominant_stage"] in ("text_encoder", "20_steps", "decode")
    assert rows["torch-fp32"]["speedup_vs_baseline"]["total"] == pytest.approx(1.0)

    cached_rows = data["cached_summary"]["512"]
    assert list(cached_rows) == cached
    for backend, row in cached_rows.items():
        total = row["prompt_s"] + row["caption_kv_s"] + 20 * row["step_split_s"] + row["decode_s"]
        assert row["totals_s"]["20"] == pytest.approx(total)
        assert row["decode_s"] == rows[backend]["decode_s"]  # the same decoder graph on both paths
        assert row["speedup_vs_baseline"]["20"] == pytest.approx(rows["torch-fp32"]["total_s"] / total)
    text = (out / f"{stem}.md").read_text()
    assert "## sana-edge's path" in text and "| ort-int8 |" in text.split("## sana-edge's path")[1]


def test_cached_path_feeds_match_the_graph_declarations():
    """The cached stages feed exactly the declared inputs at the shapes the runtime uses: 20 prompt
    tokens on the instruction's K/V at batch 1, and the caption K/V the step graph reads."""
    from benchmarks.bench_cached_path import INSTRUCTION_TOKENS, PROMPT_TOKENS, cached_stages
    from benchmarks.bench_models import component_spec, model_dims, stage_inputs

    dims = model_dims("tiny")
    prompt = stage_inputs("tiny", "prompt", None)
    assert set(prompt) == set(component_spec("text_encoder", "tiny").input_names)
    assert prompt["input_ids"].shape == (1, PROMPT_TOKENS)
    assert prompt["attention_mask"].shape == (1, INSTRUCTION_TOKENS + PROMPT_TOKENS)
    assert prompt["past_keys"].shape == (dims["text_layers"], 1, dims["text_kv_heads"], INSTRUCTION_TOKENS, dims["text_head_dim"])
    step = stage_inputs("tiny", "step_split", 64)
    assert set(step) == set(component_spec("transformer_step", "tiny").input_names)
    assert step["caption_keys"].shape == (dims["transformer_layers"], 2, dims["cross_attention_heads"], 300,
                                          dims["cross_attention_head_dim"])
    assert cached_stages("sprint-tiny") == ("prompt",)  # Sprint exports keep the single transformer graph


def test_bench_is_a_cli_command():
    from typer.testing import CliRunner

    from sana_edge.cli import app

    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--backends" in result.output and "--quick" in result.output


def test_fp16_traced_graph_upcasts_to_an_equivalent_fp32_graph(tmp_path):
    """Gemma-2-2B's fp32 graph is made by tracing in fp16 and upcasting (bench_exports): the result
    must be an all-fp32 graph computing what the fp16-rounded weights compute in fp32."""
    import copy

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from benchmarks.bench_exports import _trace_then_free, upcast_fp16_graph
    from benchmarks.bench_models import build_torch, model_dims
    from sana_edge.components import COMPONENTS, sample_inputs
    from sana_edge.export.onnx_export import as_fp16

    spec, dims = COMPONENTS["text_encoder"], model_dims("tiny")
    module = build_torch("tiny", "text_encoder")
    reference = copy.deepcopy(module)
    for parameter in reference.parameters():  # the weights the fp16 trace keeps, computed in fp32
        parameter.data = parameter.data.half().float()
    traced = _trace_then_free(spec, as_fp16(module), dims, tmp_path / ".trace")
    upcast_fp16_graph(traced, tmp_path / "text_encoder.onnx")

    graph = onnx.load(str(tmp_path / "text_encoder.onnx"), load_external_data=False)
    assert {t.data_type for t in graph.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert not [n for n in graph.graph.node for a in n.attribute if n.op_type == "Cast" and a.i == onnx.TensorProto.FLOAT16]
    feeds = sample_inputs(spec, {**dims, **spec.validation_shapes[0]})
    output = ort.InferenceSession(str(tmp_path / "text_encoder.onnx")).run(None, feeds)[0]
    with torch.no_grad():
        expected = reference(*[torch.from_numpy(feeds[n]) for n in spec.input_names])[0].numpy()  # last hidden state
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, expected, atol=2e-4 * float(np.abs(expected).max()))


def test_sprint_models_run_at_batch_1_with_guidance_and_total_1_2_4_steps():
    """Sana-Sprint rows: no CFG batch, the guidance input fed, totals for 1, 2 (headline) and 4 steps."""
    from benchmarks.bench_models import stage_inputs, torch_args
    from benchmarks.bench_report import markdown, summarize

    step = stage_inputs("sprint-tiny", "step", 64)
    assert step["latents"].shape[0] == 1 and step["guidance"].shape == (1,)
    assert len(torch_args("step", step, model="sprint-tiny")) == 5  # latents, embeds, mask, timestep, guidance
    assert stage_inputs("sprint-tiny", "text_encoder", None)["input_ids"].shape[0] == 1
    assert "guidance" not in stage_inputs("tiny", "step", 64) and stage_inputs("tiny", "step", 64)["latents"].shape[0] == 2

    medians = {"text_encoder": 2.0, "step": 0.5, "decode": 3.0}
    measurements = [{"stage": s, "size": None if s == "text_encoder" else 512, "backend": b,
                     "median_s": v * (1 if b == "torch-fp32" else 0.5), "peak_rss_mb": 1.0, "x_from_floor": 1.0}
                    for s, v in medians.items() for b in ("torch-fp32", "ort-int8")]
    result = {"settings": {"sizes": [512], "steps": [1, 2, 4], "primary_steps": 2, "sampler": "sprint",
                           "caption_tokens": 300, "repeats": 3, "warmup": 1},
              "baseline": "torch-fp32", "backends": ["torch-fp32", "ort-int8"], "measurements": measurements,
              "machine": {"cpu": "cpu", "threads": 2, "cores": 2, "isa": ["avx2"]}, "matmul_rate": {"fp32_gflops": 100.0}, "flops": {},
              "versions": {}, "command": "x", "duration_s": 1.0, "model": "sprint-tiny"}
    result["summary"] = summarize(result)
    row = result["summary"]["512"]["ort-int8"]
    assert row["totals_s"] == {"1": 2.75, "2": 3.0, "4": 3.5} and row["total_s"] == 3.0
    assert row["dominant_stage"] == "decode" and row["total_speedup_vs_baseline"]["4"] == pytest.approx(2.0)
    text = markdown(result)
    assert "total 2 steps (s) | total 1 steps (s) | total 4 steps (s)" in text and "batch 1" in text
    assert "CPU ISA: AVX2" in text


def test_text_encoder_latency_benchmark_measures_every_path_and_records_the_isa(tmp_path):
    """benchmarks.text_encoder_latency on the tiny model: every path encodes the same prompt, the
    cached one runs only the prompt's tokens, and the results carry the CPU's ISA."""
    import json

    from benchmarks.text_encoder_latency import PATHS, main

    result = main(["--model", "tiny", "--precisions", "fp32,int4", "--repeats", "1", "--prompt-tokens", "12",
                   "--instruction-tokens", "40", "--cache", str(tmp_path / "graphs"), "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "text_encoder_latency.json").read_text())
    from sana_edge.cpu import cpu_features

    assert saved["machine"]["isa"] == cpu_features().describe() and saved["machine"]["int8_dot"] in (True, False)
    for entry in result["precisions"].values():
        assert set(entry["median_s"]) == set(PATHS) and entry["finite"]
        assert entry["prefix_tokens"] == 39  # the instruction's last token merges with the prompt
        assert all(c >= 0.99999 for c in entry["cosine_vs_cached"].values())
    assert "| fp32 |" in (tmp_path / "text_encoder_latency.md").read_text()
