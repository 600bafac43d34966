"""The GPU suite: diffusers bf16 / bnb nf4 against sana-edge on ONNX Runtime CUDA, resumable.

    python -m benchmarks.gpu_suite [--model sana-0.6b] [--sizes 512,1024,2048] [--budget-s 540]
    python -m benchmarks.gpu_suite --dry-run          # the same code on the CPU provider, tiny model

The work is a list of items, done in order, each recorded under the state folder (default
/tmp/sana-gpu-suite, which the lent machine keeps between back-to-back commands):
  checkpoint:<model>            random-weight diffusers checkpoint of the full-size architecture
  export:<model>:<precision>    `sana-edge export` of it (fp16 by default)
  case:<backend>:<model>:<size> one measured process (benchmarks.gpu_case)
  floor                         step FLOPs and the device's measured GEMM rate (the compute floor)
  trt-rtx                       try a TensorRT-RTX engine export carried from elsewhere (--trt-export)
and at the end the report: JSON, md and PNG in --results (benchmarks/results by default).
A command stops starting items once --budget-s is spent and exits 3 ("run it again"); a
re-run skips finished items. An item killed by the budget twice is recorded as failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sana_edge.fileio import write_json_atomic

RESULTS = Path(__file__).parent / "results"
PACKAGE = __package__ or "benchmarks"  # `sana_edge.benchmarks` when run from the installed wheel
BACKENDS = ("torch-bf16", "torch-nf4", "ort-cuda-fp16", "ort-cuda-fp16-graph")
BACKEND_FORM = re.compile(r"torch-bf16|torch-nf4|ort-cuda-(fp32|fp16|int8|int4)(-graph)?")
MORE_TO_DO = 3


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sana-0.6b", choices=("sana-0.6b", "sana-1.6b"))
    p.add_argument("--sizes", default="512,1024,2048")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--budget-s", type=float, default=540.0, help="stop starting items after this (a command < 10 min)")
    p.add_argument("--state", type=Path, default=None, help="state folder (default /tmp/sana-gpu-suite[-dry])")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--max-memory", default=None, help="ort-cuda cases plan within this budget, e.g. 4GB (the memory goal)")
    p.add_argument("--trt-export", type=Path, default=None, help="a TensorRT-RTX export made elsewhere, to try here")
    p.add_argument("--dry-run", action="store_true", help="tiny model, CPU provider, 64 px, 2 steps, 1 run")
    args = p.parse_args(argv)
    if args.dry_run:
        args.model, args.steps, args.repeats, args.warmup = "tiny", 2, 1, 0
        args.sizes = args.sizes if args.sizes != "512,1024,2048" else "64"
    args.device = "cpu" if args.dry_run else "cuda"
    args.state = args.state or Path("/tmp/sana-gpu-suite" + ("-dry" if args.dry_run else ""))
    args.size_list = [int(s) for s in args.sizes.split(",")]
    args.backend_list = args.backends.split(",")
    unknown = [b for b in args.backend_list if not BACKEND_FORM.fullmatch(b)]
    if unknown:
        p.error(f"unknown backend(s) {unknown}; choose from torch-bf16, torch-nf4, ort-cuda-PRECISION[-graph]")
    return args


def precisions(backends: list[str]) -> list[str]:
    return sorted({b.split("-")[2] for b in backends if b.startswith("ort-cuda-")})


def items(args) -> list[str]:
    work = [f"checkpoint:{args.model}"] + [f"export:{args.model}:{p}" for p in precisions(args.backend_list)]
    budget = f"@{args.max_memory}" if args.max_memory else ""  # a budgeted case is another item
    work += [f"case:{b}:{args.model}:{s}{budget}" for s in args.size_list for b in args.backend_list] + ["floor"]
    return work + (["trt-rtx"] if args.trt_export else [])


class State:
    """Finished items and their records under the state folder; attempts count budget kills."""

    def __init__(self, root: Path):
        self.root = root
        for folder in ("items", "cases"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def path(self, item: str) -> Path:
        return self.root / "items" / (item.replace(":", "__") + ".json")

    def record(self, item: str) -> dict | None:
        path = self.path(item)
        return json.loads(path.read_text()) if path.is_file() else None

    def done(self, item: str) -> bool:
        record = self.record(item)
        return record is not None and record.get("status") != "interrupted"

    def save(self, item: str, record: dict) -> None:
        write_json_atomic(self.path(item), record)

    def checkpoint(self, model: str) -> Path:
        return self.root / "checkpoints" / model

    def export(self, model: str, precision: str) -> Path:
        return self.root / "exports" / f"{model}-{precision}"


def _subprocess(args_list: list[str], timeout: float) -> tuple[int | None, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run([sys.executable, *args_list], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "killed at the command's time budget"
    return done.returncode, (done.stderr or "")[-2000:]


def run_item(item: str, args, state: State, remaining: float) -> dict:
    """Do one item in a child process (its memory is returned to the OS after)."""
    kind, *rest = item.split(":")
    start = time.perf_counter()
    if kind == "checkpoint":
        code, log = _subprocess(["-c", "import sys; from sana_edge.export.tiny import write_tiny_checkpoint; "
                                 "write_tiny_checkpoint(sys.argv[1], seed=0, preset=sys.argv[2])",
                                 str(state.checkpoint(rest[0])), rest[0]], remaining)
    elif kind == "export":
        model, precision = rest
        code, log = _subprocess(["-c", "import sys; from sana_edge.cli.app import main; sys.exit(main())", "export",
                                 str(state.checkpoint(model)), "-o", str(state.export(model, precision)),
                                 "--precision", precision, "--force"], remaining)
    elif kind == "case":
        backend, model, size = rest
        out = state.root / "cases" / (item.replace(":", "__") + ".json")
        case = {"backend": backend, "model": model, "size": int(size.split("@")[0]), "steps": args.steps,
                "repeats": args.repeats, "warmup": args.warmup, "device": args.device, "max_memory": args.max_memory,
                "checkpoint": str(state.checkpoint(model)),
                "export": str(state.export(model, backend.split("-")[2])) if backend.startswith("ort") else None,
                "out": str(out)}
        code, log = _subprocess(["-m", f"{PACKAGE}.gpu_case", json.dumps(case)], remaining)
        if code == 0:
            return json.loads(out.read_text()) | {"seconds_item": time.perf_counter() - start}
    elif kind == "floor":
        out = state.root / "floor.json"
        code, log = _subprocess(["-m", f"{PACKAGE}.gpu_floor", args.model, args.sizes, args.device, str(out)], remaining)
        if code == 0:
            return json.loads(out.read_text()) | {"seconds_item": time.perf_counter() - start}
    else:
        code, log = _subprocess(["-m", f"{PACKAGE}.gpu_trt_probe", str(args.trt_export), str(state.root / "trt.json")],
                                remaining)
        if code == 0:
            return json.loads((state.root / "trt.json").read_text()) | {"seconds_item": time.perf_counter() - start}
    status = "interrupted" if code is None else ("ok" if code == 0 else "failed")
    return {"status": status, "seconds_item": time.perf_counter() - start, "log_tail": "" if code == 0 else log}


def run_items(args, state: State, started: float) -> bool:
    """Run unfinished items while the budget lasts; True when every item is done."""
    for item in items(args):
        if state.done(item):
            continue
        remaining = args.budget_s - (time.perf_counter() - started)
        if remaining <= 5:
            return False
        print(f"[gpu_suite] {item} ({remaining:.0f} s left in this command)", flush=True)
        record = run_item(item, args, state, remaining)
        previous = state.record(item) or {}
        record["attempts"] = previous.get("attempts", 0) + 1
        if record["status"] == "interrupted" and record["attempts"] >= 2:
            record["status"] = "failed"  # twice past a whole command's budget: it will not fit
        state.save(item, record)
        print(f"[gpu_suite] {item}: {record['status']} in {record['seconds_item']:.1f} s "
              f"{record.get('error') or record.get('log_tail', '')[-300:]}", flush=True)
        if record["status"] == "interrupted":
            return False
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    state = State(args.state)
    if not run_items(args, state, started):
        print(f"[gpu_suite] more to do: run the same command again (state in {args.state})", flush=True)
        return MORE_TO_DO
    from .gpu_report import write_report

    paths = write_report(args, {item: state.record(item) for item in items(args)}, args.results)
    print("[gpu_suite] wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
