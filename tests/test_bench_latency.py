"""The latency benchmark cannot rot: its quick mode (tiny model, one size, 2 repeats) runs end to end
through export, worker processes, summary, markdown and plot, and its JSON keeps its schema."""

from __future__ import annotations

import json

import pytest

BACKENDS = ["torch-fp32", "ort-fp32", "ort-int8", "ort-int4"]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.timeout(300)
def test_quick_benchmark_writes_json_markdown_and_plot(tmp_path):
    from benchmarks.latency import main

    out = tmp_path / "results"
    result = main(["--quick", "--out", str(out), "--cache", str(tmp_path / "cache")])

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

    # every (stage, backend) measured once per size; text encoding once in all
    assert len(data["measurements"]) == len(BACKENDS) * 3
    for entry in data["measurements"]:
        assert entry["error"] is None, entry
        assert len(entry["times_s"]) == 2 and all(_positive(t) for t in entry["times_s"])
        assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
        for key in ("peak_rss_mb", "flops", "floor_s", "x_from_floor"):
            assert _positive(entry[key]), (key, entry)
        assert entry["output_finite"] is True
    shared = {(e["backend"], e["stage"]): e["shared_with"] for e in data["measurements"] if e["shared_with"]}
    assert shared == {("ort-int8", "decode"): "ort-fp32", ("ort-int4", "decode"): "ort-fp32"}

    rows = data["summary"]["512"]
    assert set(rows) == set(BACKENDS)
    for backend, row in rows.items():
        assert _positive(row["total_s"])
        for stage, ratio in row["speedup_vs_baseline"].items():
            assert _positive(ratio), (backend, stage)
        assert row["dominant_stage"] in ("text_encoder", "20_steps", "decode")
    assert rows["torch-fp32"]["speedup_vs_baseline"]["total"] == pytest.approx(1.0)


def test_bench_is_a_cli_command():
    from typer.testing import CliRunner

    from sana_edge.cli import app

    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--backends" in result.output and "--quick" in result.output
