"""The compute floor of the GPU suite's stages: FLOPs (torch's FlopCounterMode on the meta device,
benchmarks.bench_models) over the best half-precision GEMM rate measured on this device.

    python -m benchmarks.gpu_floor MODEL SIZES DEVICE OUT.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sana_edge.fileio import write_json_atomic

from .bench_models import count_flops


def gemm_tflops(device: str, repeats: int = 5) -> float:
    """Best-of-`repeats` dense GEMM rate: fp16 8192^3 on a GPU, fp32 512^3 on the CPU stand-in."""
    import torch

    n, dtype = (8192, torch.float16) if device == "cuda" else (512, torch.float32)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def main() -> None:
    model, sizes, device, out = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], sys.argv[3], Path(sys.argv[4])
    bench_model = "tiny" if model == "tiny" else model
    flops = count_flops(bench_model, sizes)["flops"]
    rate = gemm_tflops(device)
    write_json_atomic(out, {"status": "ok", "gemm_tflops": rate, "step_flops": flops["step"],
                            "step_floor_s": {s: f / (rate * 1e12) for s, f in flops["step"].items()}})


if __name__ == "__main__":
    main()
