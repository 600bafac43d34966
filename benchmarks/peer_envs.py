"""Peers in their own virtual environments: optimum-onnx pins transformers < 4.58, and so
huggingface-hub < 1.0 and diffusers <= 0.39, which cannot share an environment with the export
extras (transformers 5.24, diffusers 0.42.1; FIELD_NOTES.md). The venv is made once per pinned
stack under build/peers/ and reused; sana-edge itself is installed into it without dependencies
(editable), only so that a benchmark worker there speaks the same protocol and feeds the same
inputs (benchmarks.bench_worker); optimum's stack is left exactly as pinned.

    python -m benchmarks.peer_envs optimum       # make (or find) the venv, print its python
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "build" / "peers"
# Measured together on these machines (2026-11): optimum-cli exports Sana and ORTSanaPipeline runs.
OPTIMUM_ONNX_STACK = (
    "optimum-onnx[onnxruntime]==0.1.0", "optimum==2.1.0", "transformers==4.57.6", "diffusers==0.39.0",
    "huggingface-hub==0.36.2", "torch==2.13.0", "onnxruntime==1.32.0", "onnx==1.23.2", "safetensors==0.8.0",
    "sentencepiece==0.2.3", "tokenizers==0.22.2",
)
INSTALL_TIMEOUT_S = 1800


def _base_python() -> str:
    """The interpreter this one was made from (a venv's python would nest venvs)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def optimum_env(root: Path = PEERS, log=print) -> Path:
    """The python of the optimum-onnx venv, made on first use (a few minutes: torch, optimum)."""
    key = hashlib.sha256(json.dumps(OPTIMUM_ONNX_STACK).encode()).hexdigest()[:10]
    env = root / f"optimum-onnx-{key}"
    python, stamp = env / "bin" / "python", env / "installed.json"
    if stamp.is_file() and python.exists():
        return python
    shutil.rmtree(env, ignore_errors=True)  # a half-made venv from an interrupted install
    env.parent.mkdir(parents=True, exist_ok=True)
    log(f"making the optimum-onnx venv {env} ({', '.join(OPTIMUM_ONNX_STACK)})")
    subprocess.run([_base_python(), "-m", "venv", str(env)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + list(OPTIMUM_ONNX_STACK), check=True, timeout=INSTALL_TIMEOUT_S)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True, timeout=INSTALL_TIMEOUT_S)
    stamp.write_text(json.dumps({"stack": OPTIMUM_ONNX_STACK}, indent=2) + "\n")
    return python


def checkpoint_for_optimum(checkpoint: Path, out: Path) -> Path:
    """A view of a checkpoint that transformers 4.x loads: transformers 5 saves Gemma's tokenizer
    as class `GemmaTokenizer` with tokenizer.json only, which 4.x reads as the sentencepiece
    tokenizer (and fails without tokenizer.model); the fast class reads the same file."""
    out.mkdir(parents=True, exist_ok=True)
    for item in checkpoint.iterdir():
        if item.name not in ("model_index.json", "tokenizer") and not (out / item.name).exists():
            (out / item.name).symlink_to(item.resolve())
    index = json.loads((checkpoint / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "GemmaTokenizerFast"]
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    shutil.copytree(checkpoint / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    config_path = out / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "GemmaTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2))
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["optimum"]:
        sys.exit("usage: python -m benchmarks.peer_envs optimum")
    print(optimum_env(log=lambda m: print(m, file=sys.stderr)))
