"""Calibration data from the real sampler: run the full-precision export over a prompt set through
Flow-DPM-Solver trajectories with CFG and record what each graph is fed.

The transformer is recorded at every step of each trajectory, so its inputs span the whole
schedule (high-noise to clean); the decoder at the end; the text encoder on every prompt.
Deterministic for a given seed: prompt order is the file's, noise comes from seed + index.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from sana_edge.prompt import read_prompt_file

SHIPPED_PROMPTS = Path(__file__).with_name("calibration_prompts.txt")


def read_prompts(path: Path | None) -> list[str]:
    """The calibration prompts: the file given, or the shipped set."""
    return read_prompt_file(Path(path) if path else SHIPPED_PROMPTS, "calibration prompt")


class _Recorder:
    """Wraps a backend session and keeps a copy of every feed dict it runs."""

    def __init__(self, session):
        self.session = session
        self.input_names = session.input_names
        self.output_names = session.output_names
        self.feeds: list[dict] = []

    def run(self, feeds):
        self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.session.run(feeds)

    def close(self):
        self.session.close()


def collect(export_dir: Path, prompts: list[str], steps: int, resolution: int, seed: int, log=print) -> dict:
    """Feeds recorded per component name: {"transformer": [feed, ...], ...}."""
    from sana_edge.pipeline import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(export_dir, verify=False)
    recorders = {}
    for name in ("text_encoder", "transformer", "vae_decoder"):
        recorders[name] = _Recorder(pipe.session(name))
        pipe._sessions[name] = recorders[name]
    for index, prompt in enumerate(prompts):
        pipe.generate(prompt, height=resolution, width=resolution, steps=steps, seed=seed + index)
        log(f"    calibration trajectory {index + 1}/{len(prompts)}: {prompt[:60]}")
    return {name: recorder.feeds for name, recorder in recorders.items()}


def calibration_hash(prompts: list[str], steps: int, resolution: int, seed: int) -> str:
    payload = json.dumps({"prompts": prompts, "steps": steps, "resolution": resolution, "seed": seed})
    return hashlib.sha256(payload.encode()).hexdigest()


class FeedReader:
    """onnxruntime.quantization CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict]):
        self._feeds = feeds
        self._position = 0

    def get_next(self):
        if self._position >= len(self._feeds):
            return None
        self._position += 1
        return self._feeds[self._position - 1]

    def rewind(self):
        self._position = 0
