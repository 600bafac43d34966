"""Try a TensorRT-RTX export built elsewhere on this GPU and record exactly what happens.

    python -m benchmarks.gpu_trt_probe EXPORT OUT.json

TensorRT-RTX does not list Hopper (H100), so the expected outcome there is a refusal: this
records which one (the bindings missing, the header check's verdict, or the load's error) with
the GPU's name and compute capability, rather than assuming it.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from sana_edge.fileio import write_json_atomic


def probe(export: Path) -> dict:
    record = {"status": "ok", "export": str(export)}
    try:
        from sana_edge.backends import cuda_driver, tensorrt_problem
        from sana_edge.manifest import load_manifest

        device = cuda_driver.Device()
        record["gpu"] = {"name": device.name, "compute_capability": device.compute_capability}
        manifest = load_manifest(export)
        record["problem"] = tensorrt_problem(manifest)
        from sana_edge.pipeline import SanaEdgePipeline

        pipe = SanaEdgePipeline.from_export(export, backend="tensorrt")
        result = pipe.generate("a red fox", steps=2, seed=0)
        record["outcome"] = f"ran: {result.image.size} image, timings {result.timings}"
    except BaseException as exc:  # noqa: BLE001 - what happened is the result
        record["outcome"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        record["traceback"] = traceback.format_exc()[-1500:]
    return record


def main() -> None:
    write_json_atomic(Path(sys.argv[2]), probe(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
