"""Calibration data from the real sampler: run the full-precision graphs over a prompt set through
the model's own trajectories (Flow-DPM-Solver with CFG for Sana; for Sana-Sprint its SCM steps
at batch 1 with the guidance input, over both its default 2-step schedule and the 4-step one, so
the times of 1-4 step runs are covered) and record what the recipe's calibrated components are fed.

The transformer is recorded at every step of each trajectory, so its inputs span the whole
schedule (high-noise to clean). The decoder, when a recipe calibrates it, gets the latents that
end each trajectory (what it decodes at run time); no image is decoded during calibration.
Deterministic for a given seed: prompt order is the file's, noise comes from seed + index.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from sana_edge.prompt import read_prompt_file

SHIPPED_PROMPTS = Path(__file__).with_name("calibration_prompts.txt")
CALIB_MAX_RESOLUTION = 512  # px: calibration cost grows with the square of the size
SANA_CALIB_STEPS = 8  # Flow-DPM-Solver steps per trajectory when --calib-steps is not given
SPRINT_CALIB_STEPS = (2, 4)  # Sprint: its 2-step schedule (pi/2, 1.3) and the even 4-step one


def trajectory_steps(model, steps: int | None) -> tuple[int, ...]:
    """Step counts of the trajectories run for each prompt (`steps`: the user's --calib-steps)."""
    if steps is not None:
        return (steps,)
    return SPRINT_CALIB_STEPS if model.sprint else (SANA_CALIB_STEPS,)


def read_prompts(path: Path | None) -> list[str]:
    """The calibration prompts: the file given, or the shipped set."""
    return read_prompt_file(Path(path) if path else SHIPPED_PROMPTS, "calibration prompt")


def calibration_resolution(calibration, base_size: int) -> int:
    # The model's own size up to 512 px (cost): calibrating a 128 px model at half size (2x2
    # latents) cost it 4.7 task-score points; at 128 px int8 matched fp32 (shapes_score).
    return calibration.resolution or max(32, min(base_size, CALIB_MAX_RESOLUTION) // 32 * 32)


class _RecordingSession:
    """A backend session that keeps every feed dict it runs (and, while `backend.held_out`, the
    outputs too). Arrays fed again unchanged (the caption, the same at every step of a
    trajectory) are stored once."""

    def __init__(self, session, backend: "RecordingBackend", name: str):
        self.session, self.backend, self.name = session, backend, name
        self.input_names, self.output_names = session.input_names, session.output_names
        self._last: dict = {}

    def run(self, feeds):
        kept = {}
        for name, value in feeds.items():
            previous = self._last.get(name)
            same = previous is not None and previous.shape == value.shape and np.array_equal(previous, value)
            kept[name] = previous if same else np.array(value, copy=True)
        self._last = kept
        outputs = self.session.run(feeds)
        if self.backend.held_out is None:
            self.backend.feeds[self.name].append(kept)
        else:
            self.backend.held_out[self.name].append((kept, {k: np.array(v) for k, v in outputs.items()}))
        return outputs

    def close(self):
        self.session.close()


class RecordingBackend:
    """Wraps a backend (the public contract, sana_edge.backends.base): sessions of the
    `record` components keep their feeds in `self.feeds[name]`; everything else passes through."""

    def __init__(self, backend, record: set[str]):
        self._backend = backend
        self.feeds: dict[str, list] = {name: [] for name in record}
        self.held_out: dict[str, list] | None = None  # set: record (feeds, outputs) pairs instead

    def load_component(self, manifest, name: str, low_memory: bool = False):
        session = self._backend.load_component(manifest, name, low_memory=low_memory)
        return _RecordingSession(session, self, name) if name in self.feeds else session

    def __getattr__(self, attribute):
        return getattr(self._backend, attribute)


HELD_OUT_PROMPTS = 2  # trajectories beyond the calibration set, to validate the quantized graphs on
HELD_OUT_FEEDS = 4  # of each component's held-out feeds, spread over the trajectories


def collect(manifest, recipe: dict, prompts: list[str], steps: tuple[int, ...], resolution: int, seed: int,
            held_out_prompts: list[str] = (), log=print) -> tuple[dict, dict]:
    """(feeds, held_out) of every component whose config needs calibration: feeds are
    {"transformer_step": [feed, ...], ...}; held_out holds (feed, fp32 outputs) pairs from
    trajectories the scales never saw, for validating the quantized graph on real inputs. Each
    prompt runs one trajectory per entry of `steps` (trajectory_steps).
    """
    from sana_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from sana_edge.components import DECODER
    from sana_edge.pipeline import SanaEdgePipeline

    wanted = {name for name, config in recipe.items() if config.needs_calibration}
    backend = RecordingBackend(OnnxRuntimeBackend(), wanted - {DECODER.name})
    pipe = SanaEdgePipeline(manifest, backend, keep_loaded=True)
    final = {"calibration": [], "held_out": []}
    runs = [("calibration", p) for p in prompts] + [("held_out", p) for p in held_out_prompts]
    for index, (phase, prompt) in enumerate(runs):
        if phase == "held_out" and backend.held_out is None:
            backend.held_out = {name: [] for name in backend.feeds}
        for count in steps:
            result = pipe.generate(prompt, height=resolution, width=resolution, steps=count, seed=seed + index,
                                   output_type="latent")
            final[phase].append({DECODER.input_names[0]: pipe.decoder_input(result.latents)})
        log(f"    {phase.replace('_', '-')} trajectory {index + 1}/{len(runs)}: {prompt[:60]}")
    feeds, held_out = dict(backend.feeds), {k: _spread(v) for k, v in (backend.held_out or {}).items()}
    if DECODER.name in wanted:
        feeds[DECODER.name] = final["calibration"]
        decoder = pipe.session(DECODER.name)
        held_out[DECODER.name] = [(feed, decoder.run(feed)) for feed in final["held_out"]]
    pipe.close()
    return feeds, held_out


def _spread(pairs: list) -> list:
    """HELD_OUT_FEEDS pairs evenly spread (first to last step), not all from one trajectory's start."""
    if len(pairs) <= HELD_OUT_FEEDS:
        return pairs
    return [pairs[round(i * (len(pairs) - 1) / (HELD_OUT_FEEDS - 1))] for i in range(HELD_OUT_FEEDS)]


def calibration_hash(prompts: list[str], steps, resolution: int, seed: int) -> str:
    steps = steps[0] if isinstance(steps, (tuple, list)) and len(steps) == 1 else list(steps)  # one count: as before
    payload = json.dumps({"prompts": prompts, "steps": steps, "resolution": resolution, "seed": seed})
    return hashlib.sha256(payload.encode()).hexdigest()
