"""Quantize the fp32 graphs of an export being written, following a recipe (component -> config).

Each graph is loaded once, passes through its config's handler in memory (sana_edge.quant.handlers)
and is saved once. Calibration (sampler trajectories on the fp32 graphs) runs only when some
config needs it, and records only those components' inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sana_edge.errors import UserError

from . import handlers  # noqa: F401  (registers the handler of every config type)
from .calibration import (HELD_OUT_PROMPTS, calibration_hash, calibration_resolution, collect, read_prompts,
                          trajectory_steps)
from .configs import Calibration, config_record, handler_for, needs_calibration


def quantize_component(path: Path, config, feeds: list | None, inspect: Callable | None = None) -> dict:
    """Load the graph at `path`, apply `config`'s handler, save it back; returns the handler's
    stats, plus `inspect(model)` of the result under "inspection" when given."""
    import onnx

    from sana_edge.export.onnx_export import save_model

    if not config.changes_graph:
        return {}
    model = onnx.load(str(path))
    quantized, stats = handler_for(config)(model, config, feeds)
    save_model(quantized, path)
    return {**stats, "inspection": inspect(quantized)} if inspect else stats


def calibrate(manifest, recipe: dict, calibration: Calibration,
              log: Callable[[str], None] = print) -> tuple[dict, dict, dict]:
    """(feeds of the components whose config needs calibration, held-out (feed, fp32 outputs)
    pairs to validate their quantized graphs on, the calibration record): sampler trajectories
    on the fp32 graphs of `manifest` (an export being written)."""
    every = read_prompts(calibration.prompts)
    prompts = every[: calibration.size]
    held_out_prompts = (every[calibration.size:] + every)[:HELD_OUT_PROMPTS]
    resolution = calibration_resolution(calibration, manifest.model.default_size)
    steps = trajectory_steps(manifest.model, calibration.steps)
    log(f"... calibrating on {len(prompts)} prompts x {' + '.join(map(str, steps))} steps at {resolution} px "
        f"({manifest.model.pipeline} trajectories; +{len(held_out_prompts)} held out for validation)")
    feeds, held_out = collect(manifest, recipe, prompts, steps, resolution, calibration.seed, held_out_prompts,
                              log=log)
    record = {
        "prompts": str(calibration.prompts) if calibration.prompts else "shipped", "size": len(prompts),
        "steps": steps[0] if len(steps) == 1 else list(steps), "sampler": manifest.model.pipeline,
        "resolution": resolution, "seed": calibration.seed,
        "sha256": calibration_hash(prompts, steps, resolution, calibration.seed),
    }
    return feeds, held_out, record


def quantize_export(manifest, precision: str, target: str, recipe: dict, calibration: Calibration,
                    log: Callable[[str], None] = print, inspect: Callable | None = None) -> tuple[dict, dict]:
    """Quantize the graphs of `manifest` (an export being written, fp32 graphs) per `recipe`;
    return the quantization record for the manifest, and for each calibrated component
    (feed, fp32 outputs) pairs from held-out trajectories to validate its quantized graph on."""
    recipe = {name: config for name, config in recipe.items() if name in manifest.components}
    feeds, held_out, calib_record = calibrate(manifest, recipe, calibration, log) if needs_calibration(recipe) \
        else ({}, {}, None)
    components = {}
    for name, config in recipe.items():
        log(f"... {name}: {type(config).__name__}")
        try:
            stats = quantize_component(manifest.component_path(name), config, feeds.get(name), inspect)
        except UserError:
            raise
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"quantizing {name} with {type(config).__name__} failed ({type(exc).__name__}: {reason}); "
                            "try --keep-fp to exclude the failing layers or another precision") from exc
        inspection = stats.pop("inspection", None)
        components[name] = {"config": config_record(config), "result": stats}
        if inspection is not None:
            components[name]["inspection"] = inspection
    record = {"precision": precision, "target": target, "calibration": calib_record, "components": components}
    return record, held_out
