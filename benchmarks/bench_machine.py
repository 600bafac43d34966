"""The machine a benchmark ran on: CPU/GPU description, a short tag for file names, free
memory, and its measured matmul rates (the denominator of every compute floor).

Rates are best-of-N at one large square GEMM (2048^3), which is close to the peak a library
reaches on this machine: numpy (its BLAS), onnxruntime MatMul fp32 and MatMulInteger u8 x s8
(the kernel class the int8 graphs use). torch's rate comes from `bench_models` in a subprocess.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

GEMM_N = 2048


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The vector extensions the ONNX Runtime kernels can use here, e.g. 'AVX2, AVX-512, VNNI'."""
    from sana_edge.cpu import cpu_features

    return cpu_features().describe()


def _isa_flags() -> list[str]:
    from sana_edge.cpu import cpu_features

    return sorted(f for f in cpu_features().flags if f.startswith(("avx", "amx", "fma", "f16c")))


def _bf16_native() -> bool:
    from sana_edge.cpu import cpu_features

    return cpu_features().bf16


def load_average() -> float | None:
    """1-minute load average: other work on a shared machine shows up here, next to the figures."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def gpu_model() -> str | None:
    """The first NVIDIA GPU's name, without importing torch (nvidia-smi), or None."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines()
    return names[0].strip() if out.returncode == 0 and names else None


def isa_tag(isa: list[str]) -> str:
    """The ISA class that decides which precision is fastest: amx, avx512-vnni, avx-vnni, avx512, avx2."""
    for flag, tag in (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
                      ("avx512f", "avx512"), ("avx2", "avx2")):
        if flag in isa:
            return tag
    return "isa-unknown"


def machine_tag(cores: int, cpu: str, gpu: str | None = None, isa: list[str] | None = None) -> str:
    """e.g. cpu-2c-amd-epyc-avx2 (the ISA class: the same CPU name comes with and without VNNI);
    gpu-nvidia-h100-... when a GPU was used."""
    def slug(text: str, words: int) -> str:
        text = re.sub(r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|\bwith\b.*|@.*|\d+-Core", " ", text)
        parts = re.findall(r"[a-z0-9]+", text.lower())
        return "-".join(parts[:words]) or "unknown"

    if gpu:
        return f"gpu-{slug(gpu, 4)}"
    return f"cpu-{cores}c-{slug(cpu, 3)}" + (f"-{isa_tag(isa)}" if isa is not None else "")


def mem_available_gb() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_gemm_gflops(n: int = GEMM_N, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    return 2 * n**3 / _best(lambda: a @ b, repeats) / 1e9


def ort_gemm_rates(threads: int, n: int = GEMM_N, repeats: int = 5) -> dict:
    """onnxruntime fp32 MatMul and int8 MatMulInteger rates (G(FL)OP/s); {} without onnx."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return {}
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    rates = {}
    cases = {
        "ort_fp32_gflops": ("MatMul", TensorProto.FLOAT, rng.standard_normal((n, n), np.float32),
                            rng.standard_normal((n, n), np.float32), TensorProto.FLOAT),
        "ort_int8_gops": ("MatMulInteger", TensorProto.UINT8, rng.integers(0, 255, (n, n), np.uint8),
                          rng.integers(-127, 127, (n, n), np.int8), TensorProto.INT32),
    }
    for key, (op, in_type, a, b, out_type) in cases.items():
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
            [helper.make_tensor_value_info("a", in_type, [n, n])], [helper.make_tensor_value_info("y", out_type, [n, n])],
            initializer=[numpy_helper.from_array(b, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rates[key] = 2 * n**3 / _best(lambda: session.run(None, {"a": a}), repeats) / 1e9
    return rates


def describe(threads: int) -> dict:
    return {
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "isa_flags": _isa_flags(),
        "bf16_native": _bf16_native(),
        "cores": os.cpu_count(),
        "threads": threads,
        "gpu": gpu_model(),
        "memory_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        if hasattr(os, "sysconf") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_json_and_markdown(folder: Path, stem: str, result: dict, markdown: str) -> None:
    """`folder/stem.json` and `folder/stem.md`, each written whole or not at all; echo the table."""
    from sana_edge.fileio import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(folder / f"{stem}.md", markdown)
    print(markdown)
