"""benchmarks.op_profile: per-op totals from ONNX Runtime profiler events, warm-up dropped, and
one real profile of the tiny export's step graph."""

from __future__ import annotations

from benchmarks.op_profile import profile_component, summarise


def _node(op, ts, dur):
    return {"cat": "Node", "name": f"{op}_node_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_summarise_drops_the_warm_up_and_averages_per_run():
    runs = [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 50} for ts in (0, 100, 200)]
    events = runs + [_node("MatMul", 1, 9000),  # warm-up: dropped
                     _node("MatMul", 101, 4000), _node("QuantizeLinear", 102, 1000),
                     _node("MatMul", 201, 2000), _node("QuantizeLinear", 202, 1000)]
    result = summarise(events, runs=2)
    assert result["total_ms"] == 4.0 and result["overhead_ms"] == 1.0
    assert result["ops"][0] == {"op": "MatMul", "ms": 3.0, "share": 0.75, "nodes": 1}


def test_profile_of_the_tiny_step_graph(tiny_export):
    result = profile_component(tiny_export, "transformer_step", size=64, runs=2, threads=1)
    ops = {row["op"] for row in result["ops"]}
    assert "MatMul" in ops and result["total_ms"] > 0 and result["median_wall_ms"] > 0
