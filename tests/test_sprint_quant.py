"""int8 calibration of a Sana-Sprint export records Sprint's own trajectories: batch 1 with the
guidance input, at the SCM timesteps of its 2-step and 4-step schedules."""

from __future__ import annotations

import numpy as np

from sana_edge import SanaEdgePipeline
from sana_edge.manifest import load_manifest
from sana_edge.scm_scheduler import SCMConfig, scm_time, scm_timesteps


def test_calibration_records_sprint_trajectories(sprint_export):
    from sana_edge.quant.calibration import collect, trajectory_steps
    from sana_edge.quant.configs import build_recipe

    manifest = load_manifest(sprint_export)
    assert trajectory_steps(manifest.model, None) == (2, 4) and trajectory_steps(manifest.model, 3) == (3,)
    recipe = {k: v for k, v in build_recipe("int8").items() if k in manifest.components}
    feeds = collect(manifest, recipe, ["a fox", "a cat"], (2, 4), 64, seed=0, log=lambda _: None)[0]["transformer"]
    assert len(feeds) == 2 * (2 + 4)
    for feed in feeds:
        assert feed["latents"].shape == (1, 32, 2, 2) and feed["encoder_hidden_states"].shape[0] == 1
        np.testing.assert_allclose(feed["guidance"], [4.5 * 0.1], rtol=1e-6)
    times = {round(float(scm_time(t)), 5) for steps in (2, 4) for t in scm_timesteps(SCMConfig(), steps)[:-1]}
    assert {round(float(f["timestep"][0]), 5) for f in feeds} == times


def test_sprint_int8_export_runs_close_to_fp32(sprint_checkpoint, sprint_export, tmp_path):
    from sana_edge.export.exporter import ExportOptions, export_checkpoint
    from sana_edge.quant.configs import Calibration

    options = ExportOptions(str(sprint_checkpoint), tmp_path / "int8", precision="int8",
                            calibration=Calibration(size=2, resolution=64))
    export = export_checkpoint(options, log=lambda _: None)
    record = load_manifest(export).data["quantization"]["calibration"]
    assert record["steps"] == [2, 4] and record["sampler"] == "sprint"
    latents = np.random.default_rng(0).standard_normal((1, 32, 2, 2)).astype(np.float32)
    step_noise = np.random.default_rng(1).standard_normal((1, 1, 32, 2, 2)).astype(np.float32)
    run = dict(height=64, width=64, latents=latents, step_noise=step_noise, output_type="latent")
    int8 = SanaEdgePipeline.from_export(export).generate("a fox", **run).latents
    fp32 = SanaEdgePipeline.from_export(sprint_export).generate("a fox", **run).latents
    cosine = float((int8 * fp32).sum() / np.linalg.norm(int8) / np.linalg.norm(fp32))
    assert np.isfinite(int8).all() and cosine > 0.95

    from sana_edge.evaluation import compare_exports

    result = compare_exports(sprint_export, export, ["a fox", "a cat"], size=64)  # `sana-edge eval` on Sprint
    assert result["config"]["sampler"] == "sprint" and result["config"]["steps"] == 2
    assert len(result["summary"]["latent_sqnr_db_per_step"]) == 2
    assert 0.9 < result["summary"]["transformer_cosine"]["min"] < 1.0
    same = compare_exports(sprint_export, sprint_export, ["a fox"], size=64, steps=4)  # same noise, same graphs
    assert same["summary"]["psnr_db"]["min"] == float("inf")
