"""benchmarks.gpu_suite --dry-run: the suite's items, cases and report on the CPU provider with the
tiny model. The checkpoint and export items are resumed from the session's fixtures (the suite
skips finished items; `sana-edge export` itself is tested elsewhere), so the test runs the cases:
diffusers, the nf4 case's refusal on CPU, and ort-cuda's IO-binding path on the CPU device."""

from __future__ import annotations

import json
import shutil

from benchmarks import gpu_suite


def _seed_state(state, tiny_checkpoint, tiny_export):
    """What the checkpoint and export items leave behind, as a finished earlier command would."""
    store = gpu_suite.State(state)
    shutil.copytree(tiny_checkpoint, store.checkpoint("tiny"))
    shutil.copytree(tiny_export, store.export("tiny", "fp32"))
    for item in ("checkpoint:tiny", "export:tiny:fp32"):
        store.save(item, {"status": "ok", "seconds_item": 0.0})


def test_dry_run_measures_every_case_and_writes_the_report(tmp_path, tiny_checkpoint, tiny_export):
    state, results = tmp_path / "state", tmp_path / "results"
    _seed_state(state, tiny_checkpoint, tiny_export)
    argv = ["--dry-run", "--state", str(state), "--results", str(results),
            "--backends", "torch-bf16,torch-nf4,ort-cuda-fp32,ort-cuda-fp32-graph"]
    assert gpu_suite.main(argv) == 0
    report = json.loads((results / "gpu-dry-run-cpu.json").read_text())
    assert (results / "gpu-dry-run-cpu.png").stat().st_size > 1000
    rows = report["summary"]["64"]
    for backend in ("torch-bf16", "ort-cuda-fp32", "ort-cuda-fp32-graph"):
        row = rows[backend]
        assert row["total_s"] > 0 and row["step_s"] > 0 and row["device_peak_mib"] > 0, backend
        assert abs(row["total_s"] - (row["text_encoder_s"] + row["denoise_s"] + row["decode_s"])) < 1e-9
    assert rows["torch-nf4"] is None and "needs a GPU" in report["status"]["torch-nf4:64"]
    assert rows["ort-cuda-fp32"]["planner_estimate_mib"] > 0 and rows["ort-cuda-fp32"]["host_update_s"] > 0
    assert rows["ort-cuda-fp32"]["speedup_total"] > 0, "ratios against the diffusers row of the same run"
    floor = report["records"]["floor"]
    assert floor["gemm_tflops"] > 0 and floor["step_flops"]["64"] > 0
    assert rows["ort-cuda-fp32"]["step_x_floor"] == rows["ort-cuda-fp32"]["step_s"] / floor["step_floor_s"]["64"]
    records = [r for r in report["records"].values() if r and r.get("status") == "ok" and "case" in r]
    assert all(r["output_finite"] for r in records)
    assert "| 64 | ort-cuda-fp32 |" in (results / "gpu-dry-run-cpu.md").read_text()
    # A second command finds everything done and only rewrites the report.
    assert gpu_suite.main(argv) == 0
    assert json.loads((results / "gpu-dry-run-cpu.json").read_text())["records"] == report["records"]


def test_a_spent_budget_stops_before_the_next_item_and_asks_for_a_rerun(tmp_path, capsys):
    state = tmp_path / "state"
    code = gpu_suite.main(["--dry-run", "--state", str(state), "--results", str(tmp_path / "r"), "--budget-s", "1"])
    assert code == gpu_suite.MORE_TO_DO
    assert "run the same command again" in capsys.readouterr().out
    assert not any((state / "items").iterdir()), "nothing started, nothing recorded"


def test_items_are_ordered_and_backends_checked():
    args = gpu_suite.parse_args(["--sizes", "512,1024", "--backends", "torch-bf16,ort-cuda-int4-graph"])
    assert gpu_suite.items(args) == ["checkpoint:sana-0.6b", "export:sana-0.6b:int4",
                                     "case:torch-bf16:sana-0.6b:512", "case:ort-cuda-int4-graph:sana-0.6b:512",
                                     "case:torch-bf16:sana-0.6b:1024", "case:ort-cuda-int4-graph:sana-0.6b:1024", "floor"]
    assert args.device == "cuda" and str(args.state) == "/tmp/sana-gpu-suite"
    goal = gpu_suite.parse_args(["--backends", "ort-cuda-int4", "--sizes", "1024", "--max-memory", "4GB"])
    assert "case:ort-cuda-int4:sana-0.6b:1024@4GB" in gpu_suite.items(goal), "a budgeted case is its own item"
    import pytest

    with pytest.raises(SystemExit):
        gpu_suite.parse_args(["--backends", "ort-cuda-fp8"])
