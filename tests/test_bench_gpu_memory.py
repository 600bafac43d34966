"""GPU memory in the benchmarks: one measure for every runtime (NVML's used device memory since
the worker started), and workers share a GPU only when they fit its memory."""

from __future__ import annotations

import pytest

from sana_edge.backends import nvml

GiB = 2**30


class FakeNvml:
    """libnvidia-ml's calls as sana_edge.backends.nvml makes them; `used` is the device's figure."""

    def __init__(self, used: int, total: int = 16 * GiB):
        self.used, self.total = used, total

    def nvmlInit_v2(self):
        return 0

    def nvmlDeviceGetHandleByIndex_v2(self, index, ref):
        return 0 if index.value == 0 else 2  # NVML_ERROR_INVALID_ARGUMENT for a GPU that is not there

    def nvmlDeviceGetMemoryInfo(self, handle, ref):
        ref._obj.used, ref._obj.total, ref._obj.free = self.used, self.total, self.total - self.used
        return 0


def test_nvml_reads_used_free_total(monkeypatch):
    monkeypatch.setattr(nvml, "_lib", FakeNvml(used=3 * GiB))
    assert nvml.device_memory() == (3 * GiB, 13 * GiB, 16 * GiB)
    assert nvml.device_memory(1) is None


def test_worker_device_peak_counts_what_the_process_added_since_it_started(monkeypatch):
    import time

    from benchmarks.bench_worker import DevicePeak

    fake = FakeNvml(used=5 * GiB)  # another program already holds 5 GiB
    monkeypatch.setattr(nvml, "_lib", fake)
    peak = DevicePeak({"device": "cuda"})

    def load():  # context + weights stay; a workspace comes and goes, seen only while sampling
        fake.used += GiB // 2
        time.sleep(0.05)
        fake.used += GiB
        time.sleep(0.05)
        fake.used -= GiB

    peak.measure(load)
    assert peak.mb == pytest.approx(1.5 * 1024)
    assert DevicePeak({"device": "cpu"}).mb is None


def test_gpu_workers_share_the_gpu_by_gpu_memory_not_host_ram():
    from benchmarks.latency import fit_together

    gpu_jobs = {b: {"runtime": "ort", "precision": "fp32", "device": "cuda", "stage": "decode", "size": 1024,
                    "graph": "missing.onnx"} for b in ("ort-cuda-fp32", "ort-cuda-fp32-b")}
    params: dict = {}
    # each worker needs ~4 GB on the GPU (decoder activations at 1024 px); host RAM is plentiful
    assert fit_together(gpu_jobs, params, host_available=64 * GiB, gpu_free=24 * GiB)
    assert not fit_together(gpu_jobs, params, host_available=64 * GiB, gpu_free=8 * GiB)
    assert not fit_together(gpu_jobs, params, host_available=64 * GiB, gpu_free=None)  # no NVML: one at a time
    assert not fit_together(gpu_jobs, params, host_available=4 * GiB, gpu_free=80 * GiB)  # their host side
