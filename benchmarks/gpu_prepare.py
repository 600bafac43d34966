"""Wheels for the lent GPU machine, which has no registry access (torch 2.11+cu130, onnx, a CPU
onnxruntime, the CUDA 13 libraries) and takes 64 MiB of carried files per command.

On the GPU machine, first (stdlib only, nothing to carry but the repo):
    python3 benchmarks/gpu_prepare.py --probe > "$OUT/probe.json"
Here, with that probe (its Python version, platform and what is already installed):
    python -m benchmarks.gpu_prepare --from-probe probe.json [--wheels build/gpu-wheels]
downloads onnxruntime-gpu (the CUDA 13 build), diffusers, transformers, bitsandbytes, matplotlib
and every pure-Python or binary dependency the probe did not find, builds sana-edge's own wheel,
drops wheels of distributions the machine already has, splits the rest with
../shared/tools/wheel-parts and prints the commands for the lent machine, one per part set.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_PARTS = ROOT.parent / "shared" / "tools" / "wheel-parts"
# What the suite needs beyond the machine's torch/onnx. onnxruntime-gpu 1.31.1 is the CUDA 13 build
# (FIELD_NOTES.md); it installs the same module as the CPU onnxruntime and shadows it on PYTHONPATH.
# These two are fetched without their dependencies: bitsandbytes requires torch, which would pull
# torch and the CUDA wheels (GBs) that the machine already has.
WITHOUT_DEPS = ("onnxruntime-gpu==1.31.1", "bitsandbytes==0.50.2")
REQUIREMENTS = ("diffusers==0.42.1", "transformers==5.24.0", "safetensors>=0.4", "tokenizers>=0.20", "pillow>=10",
                "typer>=0.12", "rich>=13", "psutil>=5.9", "numpy>=1.26", "matplotlib>=3.7", "nvidia-ml-py",
                # onnxruntime-gpu's own dependencies
                "flatbuffers", "protobuf", "sympy", "coloredlogs", "packaging")
NEVER_CARRY = ("torch", "triton", "onnxruntime")  # the machine's own (torch + CUDA) or the CPU build we shadow
PROBED = ("torch", "onnx", "onnxruntime", "numpy", "diffusers", "transformers", "tokenizers", "safetensors",
          "huggingface_hub", "PIL", "typer", "rich", "psutil", "matplotlib", "bitsandbytes", "pynvml", "yaml",
          "regex", "requests", "tqdm", "filelock", "packaging", "protobuf", "sympy")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def probe() -> dict:
    """Runs on the GPU machine with the stdlib only: Python, platform, installed distributions."""
    import importlib.metadata as md
    import platform

    installed = {normalize(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "machine": platform.machine(),
            "libc": "-".join(platform.libc_ver()), "installed": installed}


def distribution_of(wheel: Path) -> str:
    return normalize(wheel.name.split("-")[0])


def to_drop(wheels: list[Path], installed: dict) -> list[Path]:
    """Wheels not worth carrying: distributions the machine has, and those never to carry."""
    have = set(installed) | {normalize(n) for n in NEVER_CARRY}
    return [w for w in wheels if distribution_of(w) in have and distribution_of(w) not in ("onnxruntime-gpu", "sana-edge")]


def download_commands(python: str, folder: Path) -> list[list[str]]:
    version = python.replace(".", "")
    # Every glibc manylinux tag up to the machine's 2.39 or so (bitsandbytes ships 2_24, onnxruntime 2_27/2_28).
    platforms = [arg for minor in range(17, 40) for arg in ("--platform", f"manylinux_2_{minor}_x86_64")]
    base = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", version, *platforms, "--platform", "manylinux2014_x86_64", "-d", str(folder)]
    return [base + ["--no-deps", *WITHOUT_DEPS], base + list(REQUIREMENTS)]


def prepare(probe_record: dict, folder: Path, run=subprocess.run) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for command in download_commands(probe_record["python"], folder):
        run(command, check=True)
    # The project itself: pure Python, built here; its `onnxruntime` requirement is satisfied by
    # onnxruntime-gpu's module, so it is installed with --no-deps there (wheel-parts does).
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(folder), str(ROOT)], check=True)
    dropped = to_drop(sorted(folder.glob("*.whl")), probe_record["installed"])
    for wheel in dropped:
        wheel.unlink()
    return dropped


def device_commands(parts: int) -> list[str]:
    """The commands for the lent machine, back to back (its /tmp lasts while it stays warm)."""
    lines = [f'run(carry=[".whlparts/{k}"], command="mkdir -p /tmp/whl && cp .whlparts/{k}/* /tmp/whl/")'
             for k in range(1, parts)]
    install = ("cd /tmp/whl && for p in *.part-aa; do [ -e \"$p\" ] || continue; w=${p%.part-aa}; "
               "cat \"$w\".part-* > \"$w\" && rm \"$w\".part-*; done && "
               "python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/whl/*.whl && cd - >/dev/null")
    # From /tmp, not the repo root: the installed wheel maps export/ and benchmarks/ into sana_edge.
    suite = ("R=$PWD && cd /tmp && PYTHONPATH=/tmp/site python3 -m sana_edge.benchmarks.gpu_suite "
             "--results $R/benchmarks/results{budget}; code=$?; cp -r $R/benchmarks/results $OUT/; exit $code")
    # The install shares the first suite command's 10 minutes: a smaller budget there.
    lines.append(f'run(carry=[".whlparts/{parts}"], command="mkdir -p /tmp/whl && cp .whlparts/{parts}/* /tmp/whl/ && '
                 f'{install} && {suite.format(budget=" --budget-s 420")}")')
    suite = suite.format(budget="")
    lines.append(f'run(command="{suite}")   # again, back to back, until it exits 0 (3 = more to do)')
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--probe", action="store_true", help="on the GPU machine: print what it has (JSON)")
    parser.add_argument("--from-probe", type=Path, help="the probe's JSON from the GPU machine")
    parser.add_argument("--wheels", type=Path, default=ROOT / "build" / "gpu-wheels")
    parser.add_argument("--part-mb", type=int, default=48)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(), indent=1))
        return 0
    record = json.loads(args.from_probe.read_text()) if args.from_probe else {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}", "installed": {}}
    if not args.from_probe:
        print(f"no --from-probe: downloading for Python {record['python']} and carrying everything", file=sys.stderr)
    dropped = prepare(record, args.wheels)
    print(f"not carried (the machine has them): {', '.join(w.name for w in dropped) or 'none'}")
    subprocess.run(["bash", str(WHEEL_PARTS), str(args.wheels), str(args.part_mb)], cwd=ROOT, check=True)
    parts = len([p for p in (ROOT / ".whlparts").iterdir() if p.is_dir()])
    print("\n".join(["", "On the lent machine, back to back:"] + device_commands(parts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
