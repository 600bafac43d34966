"""Latency and peak memory per stage and resolution: diffusers PyTorch eager (the baseline) against
sana-edge on ONNX Runtime fp32 / int8 / int4, full-size architectures with random weights.

    python -m benchmarks.latency [--model sana-0.6b] [--sizes 512,1024]
        [--backends torch-fp32,ort-fp32,ort-int8,ort-int4] [--repeats 3] [--warmup 1] [--quick]
    sana-edge bench ...            (the same options; results default to bench/ under the sana-edge cache folder)

Writes <out>/<machine-tag>.json (every figure, versions, machine, command), .md (tables with
speedups against the baseline) and .png (latency vs resolution, log scale).

How it measures (and why):
- Every (backend, stage, size) runs in its own fresh worker process (bench_worker.py), so its
  peak RSS is that stage's memory on that backend, and torch never enters an onnxruntime worker.
- Baseline and candidates are interleaved: when their workers fit in memory together, all load
  once and take turns run by run (order rotated each round); when they do not (the 10 GB fp32
  Gemma-2-2B twice), each round starts each backend's worker in turn (warm-up + 1 timed run) and
  the rounds repeat. Either way slow drift on a shared machine hits every backend alike.
- Compute floor: FLOPs of the stage (bench_models.count_flops) / the best fp32 GEMM rate the
  machine showed in this run (numpy, torch, onnxruntime; measured at start and end).
- Graphs are exported once per (config, precision) under --cache (bench_exports.py).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from sana_edge.backends import nvml

from . import bench_machine
from .bench_cached_path import CACHED_RUNTIMES, CACHED_STAGES, cached_stages, summarize_cached
from .bench_backends import BACKENDS, graph_kinds, job_graph, missing_extra, worker_python
from .bench_exports import DEFAULT_CACHE, graph_bytes
from .bench_models import COMPONENT_OF, MODELS, STAGES, is_sprint
from .bench_report import add_floors, markdown, plot, spread, summarize

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = __package__ or "benchmarks"
STEPS = 20  # Sana's default; Sana-Sprint models report 1, 2 (its default) and 4 steps
SPRINT_STEPS = [1, 2, 4]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _python_module(module: str, *args: str) -> str:
    """Run `python -m <this package>.<module> args` and return its stdout (stderr passes through)."""
    command = [sys.executable, "-m", f"{PACKAGE}.{module}", *args]
    return subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout


class WorkerFailed(RuntimeError):
    pass


class Worker:
    def __init__(self, job: dict):
        python = worker_python(job["runtime"], sys.executable)
        start = time.perf_counter()
        self.proc = subprocess.Popen([python, "-m", f"{PACKAGE}.bench_worker", json.dumps(job)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()
        self.spawn_s = time.perf_counter() - start  # process start to loaded: interpreter, imports, session

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerFailed(f"worker exited with code {self.proc.wait()} (killed for memory if -9)")
        message = json.loads(line)
        if "error" in message:
            raise WorkerFailed(message["error"])
        return message

    def _send(self, command: str) -> dict:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the read below reports how it ended
        return self._read()

    def run(self, n: int) -> list[float]:
        return self._send(f"run {n}")["times"] if n else []

    def quit(self) -> dict:
        end = self._send("quit")
        self.proc.wait()
        return end

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


GPU_WORKER_HOST_BYTES = 2 * 2**30  # what a GPU worker still holds in host RAM (interpreter, CUDA libraries)


def _estimate_bytes(job: dict, params: dict) -> float:
    """Rough peak of one worker (on its device), used only to decide whether workers may stay loaded together."""
    weight_bytes = 2 if job["precision"] in ("fp16", "bf16") else 4
    graph = Path(job.get("graph") or "")
    if graph.is_dir():  # optimum's folder: its one component's graph
        weights = sum(f.stat().st_size for f in graph.rglob("model.onnx*"))
    else:
        weights = graph_bytes(graph) if job.get("graph") else weight_bytes * params.get(COMPONENT_OF[job["stage"]], 0)
    activations = 4e3 * job["size"] ** 2 if job["stage"] == "decode" else 5e8  # DC-AE: ~3.7 GB at 1024 px
    return 1.25 * weights + activations


def fit_together(jobs: dict[str, dict], params: dict, host_available: float, gpu_free: float | None) -> bool:
    """Whether every worker fits loaded at once: CPU workers in host RAM, GPU workers in GPU memory."""
    on_gpu = [j for j in jobs.values() if j.get("device") == "cuda"]
    host = sum(_estimate_bytes(j, params) for j in jobs.values() if j.get("device") != "cuda")
    host += GPU_WORKER_HOST_BYTES * len(on_gpu)
    gpu = sum(_estimate_bytes(j, params) for j in on_gpu)
    return host < 0.6 * host_available and (not on_gpu or (gpu_free is not None and gpu < 0.6 * gpu_free))


def measure_stage(jobs: dict[str, dict], args, params: dict) -> dict[str, dict]:
    """Interleaved repeats of one (stage, size) over the given backends; one entry per backend."""
    available = (bench_machine.mem_available_gb() or 0) * 2**30
    gpu = nvml.device_memory() if any(j.get("device") == "cuda" for j in jobs.values()) else None
    together = not args.isolate and fit_together(jobs, params, available, gpu[1] if gpu else None)
    mode = "interleaved runs" if together else "interleaved rounds (one worker at a time)"
    log(f"{next(iter(jobs.values()))['stage']} {next(iter(jobs.values()))['size'] or ''}: {', '.join(jobs)}; "
        f"{available / 2**30:.1f} GB available" + (f", {gpu[1] / 2**30:.1f} GB free on the GPU" if gpu else "")
        + f" -> {mode}")
    times = {b: [] for b in jobs}
    load_before = bench_machine.load_average()
    info = {b: {"mode": mode, "load_s": [], "peak_rss_mb": None, "error": None, "cold_s": None, "recold_s": None}
            for b in jobs}
    workers: dict[str, Worker] = {}

    def fail(backend, exc):
        info[backend]["error"] = str(exc)
        log(f"  {backend} failed: {exc}")
        if backend in workers:
            workers.pop(backend).kill()

    def finish(backend, worker):
        end = worker.quit()
        entry = info[backend]
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"] or 0, end["peak_rss_mb"] or 0)
        entry.update(device_peak_mb=end["device_peak_mb"], output_finite=end["output_finite"],
                     rss_after_load_mb=worker.ready["rss_after_load_mb"],
                     runtime_precisions=worker.ready.get("runtime_precisions"))

    def start(backend):
        worker = Worker(jobs[backend])
        info[backend]["load_s"].append(worker.ready["load_s"])
        first = worker.run(args.warmup)
        if first and info[backend]["cold_s"] is None:  # this stage's first worker in the run
            info[backend]["cold_s"] = worker.spawn_s + first[0]
        return worker

    def recold(backend):
        """A fresh worker once more, now that the ORT cache holds the optimized graph."""
        worker = Worker(jobs[backend])
        info[backend]["recold_s"] = worker.spawn_s + worker.run(1)[0]
        finish(backend, worker)

    live = list(jobs)
    if together:
        for backend in list(live):
            try:
                workers[backend] = start(backend)
            except WorkerFailed as exc:
                fail(backend, exc)
    for round_index in range(args.repeats):
        order = [b for b in live[round_index % len(live):] + live[: round_index % len(live)] if not info[b]["error"]]
        for backend in order:
            try:
                worker = workers[backend] if together else start(backend)
                times[backend] += worker.run(1)
                if not together:
                    finish(backend, worker)
                time.sleep(0.2)  # let the previous runtime's spinning threads go idle
            except WorkerFailed as exc:
                fail(backend, exc)
        log("  round %d: %s" % (round_index + 1, ", ".join(f"{b} {times[b][-1]:.3f}s" for b in order if times[b])))
    for backend, worker in workers.items():
        try:
            finish(backend, worker)
        except WorkerFailed as exc:
            fail(backend, exc)
    for backend in [b for b in jobs if jobs[b].get("ort_cache") and not info[b]["error"]]:
        try:
            recold(backend)
        except WorkerFailed as exc:
            fail(backend, exc)
    entries = {}
    for backend in jobs:
        entry = {**info[backend], "times_s": times[backend], "load_avg": [load_before, bench_machine.load_average()]}
        entry["load_s"] = min(entry["load_s"]) if entry["load_s"] else None
        entry.update(spread(times[backend]) if times[backend] and not entry["error"] else {"median_s": None})
        entries[backend] = entry
    return entries


def cached_backends(backends: list[str], cached_path: bool) -> list[str]:
    return [b for b in backends if cached_path and BACKENDS[b][0] in CACHED_RUNTIMES]


def prepare_graphs(model: str, backends: list[str], cache: Path, cached_path: bool) -> dict:
    """{component: {graph kind: path}} for every backend that runs graphs (and the split
    transformer graphs of the cached path). Full size: one export subprocess per component, so
    each export's memory is gone before the next; tiny: one."""
    precisions = graph_kinds(backends)
    split = sorted({BACKENDS[b][1] for b in cached_backends(backends, cached_path)})
    work = [(c, precisions) for c in ("text_encoder", "transformer", "vae_decoder") if precisions]
    work += [(COMPONENT_OF[s], split) for s in cached_stages(model)[1:] if split]  # the split transformer
    graphs = {}
    for batch in ([work] if model.endswith("tiny") else [[w] for w in work]):
        for kinds in {tuple(k) for _, k in batch}:
            names = [c for c, k in batch if tuple(k) == kinds]
            log(f"graphs for {', '.join(names)} {list(kinds)} (cached under {cache})")
            out = _python_module("bench_exports", "--model", model, "--components", ",".join(names),
                                 "--precisions", ",".join(kinds), "--cache", str(cache))
            graphs.update(json.loads(out.strip().splitlines()[-1]))
    return graphs


def gemm_rates(threads: int, probe: dict | None) -> dict:
    rates = {"numpy_fp32_gflops": bench_machine.numpy_gemm_gflops(), **bench_machine.ort_gemm_rates(threads)}
    if probe:
        rates["torch_fp32_gflops"] = probe["torch_fp32_gflops"]
    return rates


def _optional_versions(backends: list[str]) -> dict:
    """OpenVINO / NNCF versions, and optimum's pinned stack when its row ran (its own venv)."""
    import importlib.metadata as md

    versions = {}
    for package in ("openvino", "nncf"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    if any(BACKENDS[b][0] == "optimum" for b in backends):
        from .peer_envs import OPTIMUM_ONNX_STACK

        versions["optimum venv"] = " ".join(OPTIMUM_ONNX_STACK)
    return versions


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sana-0.6b", choices=sorted(MODELS))
    parser.add_argument("--sizes", default="512,1024", help="comma-separated px (multiples of 32)")
    parser.add_argument("--backends", default="torch-fp32,ort-fp32,ort-int8,ort-int4", help=", ".join(BACKENDS))
    parser.add_argument("--baseline", default="torch-fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="tiny model, one size, 2 repeats (CI)")
    parser.add_argument("--sprint", action="store_true", help="with --quick: the tiny Sana-Sprint model")
    parser.add_argument("--isolate", action="store_true", help="never keep two workers loaded together")
    parser.add_argument("--no-cached-path", dest="cached_path", action="store_false",
                        help="skip sana-edge's own path (prefix-cached prompt, caption K/V once, split step)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.sizes, args.repeats, args.warmup = "sprint-tiny" if args.sprint else "tiny", "512", 2, 1
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.backends = args.backends.split(",")
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or any(s <= 0 or s % 32 for s in args.sizes) or args.repeats < 1 or args.warmup < 0:
        parser.error(f"unknown backends {unknown}" if unknown else "sizes must be positive multiples of 32; repeats >= 1")
    extra = missing_extra(args.backends)
    if extra:
        parser.error(f"the chosen backends need the '{extra}' extra; install it with: pip install 'sana-edge[{extra}]'")
    return args


def main(argv: Optional[list[str]] = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    machine = bench_machine.describe(args.threads)
    uses_gpu = any(BACKENDS[b][2] == "cuda" for b in args.backends)
    tag = bench_machine.machine_tag(machine["cores"], machine["cpu"], machine["gpu"] if uses_gpu else None,
                                   machine["isa_flags"])
    tag += ("" if args.model == "sana-0.6b" else f"-{args.model}") + ("-quick" if args.quick else "")
    machine["tag"] = tag
    log(f"{tag}: {machine['cpu']}, {args.threads} threads, {bench_machine.mem_available_gb() or 0:.1f} GB available")

    probe = None
    if importlib.util.find_spec("torch"):  # FLOPs and torch's GEMM rate, in a subprocess (no torch here)
        probe = json.loads(_python_module("bench_models", "--model", args.model, "--threads", str(args.threads),
                                          "--sizes", ",".join(map(str, args.sizes))))
    graphs = prepare_graphs(args.model, args.backends, args.cache, args.cached_path)
    # Workers keep their ORT cache of optimized graphs here, emptied first so that "cold" is cold.
    os.environ["SANA_EDGE_CACHE"] = str(args.cache / "sana-edge-home")
    shutil.rmtree(args.cache / "sana-edge-home", ignore_errors=True)
    rates = gemm_rates(args.threads, probe)

    measurements = []
    cached = cached_backends(args.backends, args.cached_path)
    for stage in STAGES + (cached_stages(args.model) if cached else ()):
        for size in ([None] if stage in ("text_encoder", "prompt") else args.sizes):
            component = COMPONENT_OF[stage]
            jobs, shared = {}, {}
            for backend in (cached if stage in CACHED_STAGES else args.backends):
                runtime, precision, device = BACKENDS[backend]
                job = {"runtime": runtime, "precision": precision, "device": device, "stage": stage,
                       "size": size or 0, "model": args.model, "threads": args.threads,
                       "ort_cache": runtime == "ort" and device == "cpu"}
                job["graph"] = job_graph(runtime, precision, component, graphs, args.model, args.cache)
                if job["graph"]:
                    twin = next((b for b, j in jobs.items() if (j.get("graph"), j["runtime"], j["device"]) ==
                                 (job["graph"], runtime, device)), None)
                    if twin:  # same graph on the same runtime (int8/int4 keep the decoder fp32)
                        shared[backend] = twin
                        continue
                jobs[backend] = job
            entries = measure_stage(jobs, args, (probe or {}).get("params", {}))
            for backend in [b for b in args.backends if b in jobs or b in shared]:
                entry = {**entries[shared.get(backend, backend)], "stage": stage, "size": size, "backend": backend,
                         "shared_with": shared.get(backend)}
                measurements.append(entry)

    rates_end = gemm_rates(args.threads, None)  # drift check: the machine may have got busier
    rates["at_end"] = rates_end
    fp32_keys = ("numpy_fp32_gflops", "torch_fp32_gflops", "ort_fp32_gflops")
    rates["fp32_gflops"] = max(r.get(k) or 0 for r in (rates, rates_end) for k in fp32_keys)
    flops = (probe or {}).get("flops", {"text_encoder": None, "step": {}, "decode": {}})
    for entry in measurements:
        stage_flops = flops.get(entry["stage"])  # none counted for the cached path's stages
        stage_flops = stage_flops.get(str(entry["size"])) if isinstance(stage_flops, dict) else stage_flops
        add_floors(entry, stage_flops, rates)

    from sana_edge.export.exporter import tool_versions

    import numpy

    result = {
        "schema": 1, "benchmark": "latency", "model": args.model, "machine": machine,
        "versions": {**tool_versions(), "numpy": numpy.__version__, **_optional_versions(args.backends)},
        "command": "python -m benchmarks.latency " + shlex.join(argv), "started": started.isoformat(timespec="seconds"),
        "settings": {"sizes": args.sizes, "repeats": args.repeats, "warmup": args.warmup,
                     **({"steps": SPRINT_STEPS, "primary_steps": 2, "sampler": "sprint"} if is_sprint(args.model)
                        else {"steps": STEPS, "sampler": "sana"}),
                     "caption_tokens": 300, "threads": args.threads, "quick": args.quick, "isolate": args.isolate},
        "baseline": args.baseline, "backends": args.backends, "matmul_rate": rates, "flops": flops,
        "params": (probe or {}).get("params"),
        "graphs": {c: {p: {"path": v, "bytes": graph_bytes(Path(v))} for p, v in ps.items()} for c, ps in graphs.items()},
        "measurements": measurements,
    }
    result["duration_s"] = time.perf_counter() - t0
    result["summary"] = summarize(result)
    result["cached_summary"] = summarize_cached(result)
    shutil.rmtree(args.cache / "sana-edge-home", ignore_errors=True)  # optimized copies: as large as the graphs
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / tag
    # Not with_suffix: a tag such as "...-sprint-0.6b" has a dot of its own.
    named = lambda suffix: stem.parent / f"{stem.name}{suffix}"  # noqa: E731
    named(".json").write_text(json.dumps(result, indent=2) + "\n")
    named(".md").write_text(markdown(result))
    plot(result, named(".png"))
    print(markdown(result))
    log(f"wrote {stem}.json, .md, .png")
    return result


if __name__ == "__main__":
    main()
