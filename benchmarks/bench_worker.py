"""One measured process: loads one stage on one backend, then runs it on command.

    python -m benchmarks.bench_worker '<json job>'

A fresh process per (backend, stage, size) makes its peak RSS the honest memory of that stage on
that backend (interpreter and libraries included, as a user would pay them), and keeps torch out
of the onnxruntime workers. Protocol, one JSON object per line: the worker writes
{"ready": ...} once loaded; then reads "run N" (replies {"times": [...]}) or "quit" (replies
{"peak_rss_mb": ...} and exits). The protocol owns the original stdout; anything the libraries
print goes to stderr.

GPU memory is measured the same way for every runtime: NVML's used device memory, sampled while
this worker loads and runs, minus the reading taken before it loaded anything. That counts the
CUDA context and the allocators' reserves, which torch's `max_memory_allocated` leaves out and
onnxruntime does not report at all. Workers sharing a GPU take turns running, so another
worker's memory stays constant while this one is measured.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from sana_edge.backends import nvml
from sana_edge.memory import PeakMemory

from .bench_models import COMPONENT_OF, stage_inputs


def rss_mb() -> tuple[float | None, float | None]:
    """(current, peak) resident set size of this process in MiB, from /proc (Linux). VmHWM
    belongs to this process's address space, so it does not inherit the parent's peak as
    ru_maxrss does across fork + exec."""
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return None, peak


class TorchRunner:
    def __init__(self, job: dict):
        import torch

        from .bench_models import build_torch, torch_args

        torch.set_num_threads(job["threads"])
        self.torch = torch
        self.device = job.get("device", "cpu")
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[job["precision"]]
        with torch.no_grad():
            self.module = build_torch(job["model"], COMPONENT_OF[job["stage"]]).to(self.device, dtype)
        self.args = torch_args(job["stage"], stage_inputs(job["model"], job["stage"], job["size"]), self.device, dtype,
                               model=job["model"])

    def run(self) -> np.ndarray:
        with self.torch.no_grad():
            out = self.module(*self.args)
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        out = out[0] if isinstance(out, tuple) else out  # the text encoder also returns its new K/V
        return out.float().cpu().numpy()


class OrtRunner:
    def __init__(self, job: dict):
        from sana_edge.backends.onnxruntime_backend import OrtSession

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if job.get("device") == "cuda" else ["CPUExecutionProvider"]
        digest = None
        if job.get("ort_cache"):  # as the runtime loads a verified export: through the optimized-graph cache
            from sana_edge.file_digests import cached_sha256

            digest = cached_sha256(Path(job["graph"]))
        self.session = OrtSession(job["graph"], providers, threads=job["threads"], graph_sha256=digest)
        self.feeds = stage_inputs(job["model"], job["stage"], job["size"])

    def run(self) -> np.ndarray:
        return next(iter(self.session.run(self.feeds).values()))


class DevicePeak:
    """This worker's peak GPU memory in MiB (see the module docstring); None on CPU jobs."""

    def __init__(self, job: dict, read=None):
        if read is None and job.get("device") == "cuda" and nvml.device_memory() is not None:
            read = lambda: nvml.device_memory()[0]  # noqa: E731
        self.read = read
        self.baseline = read() if read else None
        self.peak = self.baseline

    def measure(self, work):
        """Run `work()` while sampling device memory."""
        if self.read is None:
            return work()
        with PeakMemory(self.read) as sampled:
            result = work()
        self.peak = max(self.peak, sampled.peak)
        return result

    @property
    def mb(self) -> float | None:
        return None if self.read is None else (self.peak - self.baseline) / 2**20


class OpenVINORunner:
    """OpenVINO on the CPU: the ONNX graph as is, or the IR of an NNCF-quantized export."""

    def __init__(self, job: dict):
        from sana_edge.backends.openvino_backend import OpenVINOBackend

        # No compiled-model cache: its blob of a 10 GB graph is another 10 GB on disk, and load_s
        # should be the compile a first run pays.
        self.session = OpenVINOBackend(threads=job["threads"], cache=False).load(Path(job["graph"]),
                                                                                component=COMPONENT_OF[job["stage"]])
        self.feeds = stage_inputs(job["model"], job["stage"], job["size"])

    def run(self) -> np.ndarray:
        return next(iter(self.session.run(self.feeds).values()))

    def info(self) -> dict:
        """How many matmul-like layers OpenVINO runs at each precision (does int8 run as int8?)."""
        from sana_edge.backends.openvino_backend import runtime_precisions

        return {"runtime_precisions": runtime_precisions(self.session.compiled)}

    def device_peak_mb(self):
        return None


RUNNERS = {"torch": TorchRunner, "ort": OrtRunner, "ov": OpenVINORunner}


def make_runner(job: dict):
    if job["runtime"] == "optimum":  # only in the optimum-onnx venv (benchmarks.peer_envs)
        from .optimum_peer import OptimumRunner

        return OptimumRunner(job)
    return RUNNERS[job["runtime"]](job)


def serve(job: dict, proto) -> None:
    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    device = DevicePeak(job)  # before anything touches the GPU
    start = time.perf_counter()
    runner = device.measure(lambda: make_runner(job))
    load_s = time.perf_counter() - start
    info = runner.info() if hasattr(runner, "info") else {}
    send({"ready": True, "load_s": load_s, "rss_after_load_mb": rss_mb()[0], **info})
    finite = None
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        times = []

        def timed_runs():
            for _ in range(int(command[1])):
                start = time.perf_counter()
                out = runner.run()
                times.append(time.perf_counter() - start)
            return out

        out = device.measure(timed_runs)
        finite = bool(np.isfinite(out).all()) if finite is None else finite
        send({"times": times})
    send({"peak_rss_mb": rss_mb()[1], "device_peak_mb": device.mb, "output_finite": finite})


def main() -> None:
    job = json.loads(sys.argv[1])
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library chatter (C or Python) must not corrupt the protocol
    sys.stdout = sys.stderr
    try:
        serve(job, proto)
    except Exception as exc:  # report instead of dying silently; the orchestrator records it
        proto.write(json.dumps({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}) + "\n")
        proto.flush()
        raise


if __name__ == "__main__":
    main()
