"""The memory planner: tile size and residency from a budget, and refusals when nothing fits."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge.errors import UserError
from sana_edge.manifest import ModelValues
from sana_edge.memory import GiB, parse_bytes
from sana_edge.planner import plan_memory

# Full-size Sana-0.6B + DC-AE + Gemma-2-2B model values, fp32 file sizes.
FULL = ModelValues(latent_channels=32, out_channels=32, vae_scale_factor=32, vae_scaling_factor=0.41407, sample_size=32,
                   max_sequence_length=300, complex_human_instruction=(), timestep_scale=1.0, caption_channels=2304,
                   transformer_inner_dim=1152, mlp_ratio=2.5, decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024))
FULL_WEIGHTS = {"text_encoder": int(9.74 * GiB), "transformer": int(2.21 * GiB), "vae_decoder": int(0.59 * GiB)}


def test_parse_bytes():
    assert parse_bytes("8GB") == 8 * GiB
    assert parse_bytes("1.5 GiB") == int(1.5 * GiB)
    assert parse_bytes("512M") == 512 << 20
    assert parse_bytes("1024") == 1024
    for bad in ("eight", "8XB", "", "-1GB"):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_large_budget_decodes_untiled_and_small_budget_tiles():
    roomy = plan_memory(FULL, FULL_WEIGHTS, 1024, 1024, budget=64 * GiB)
    assert roomy.decoder_tile is None
    tight = plan_memory(FULL, FULL_WEIGHTS, 4096, 4096, budget=16 * GiB)
    assert tight.decoder_tile is not None and tight.decoder_tile < 128
    tighter = plan_memory(FULL, FULL_WEIGHTS, 4096, 4096, budget=12 * GiB)
    assert tighter.decoder_tile <= tight.decoder_tile
    for plan in (roomy, tight, tighter):
        assert plan.stage_bytes["vae_decoder"] <= plan.budget


def test_tile_never_exceeds_the_engine_profile():
    plan = plan_memory(FULL, FULL_WEIGHTS, 4096, 4096, budget=64 * GiB, max_tile=32)
    assert plan.decoder_tile == 32


def test_keep_loaded_only_when_everything_fits():
    assert plan_memory(FULL, FULL_WEIGHTS, 1024, 1024, budget=64 * GiB, keep_loaded=True).keep_loaded
    plan = plan_memory(FULL, FULL_WEIGHTS, 1024, 1024, budget=12 * GiB, keep_loaded=True)
    assert not plan.keep_loaded and "ignored" in plan.notes[0]
    assert not plan_memory(FULL, FULL_WEIGHTS, 1024, 1024, budget=64 * GiB).keep_loaded  # default: release


def test_budget_below_any_plan_names_the_stage_and_the_fix():
    with pytest.raises(UserError, match="text_encoder.*raise --max-memory"):
        plan_memory(FULL, FULL_WEIGHTS, 1024, 1024, budget=8 * GiB)
    small = dict(FULL_WEIGHTS, text_encoder=int(1.26 * GiB))  # int4 Gemma
    with pytest.raises(UserError, match="decoder needs even with the smallest tile"):
        plan_memory(FULL, dict(small, vae_decoder=int(2.7 * GiB)), 1024, 1024, budget=int(2.8 * GiB))


def test_pipeline_follows_the_plan_and_reports_peak_memory(tiny_export):
    from sana_edge.pipeline import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(tiny_export, keep_loaded=False)
    roomy = pipe.generate("a red fox", height=256, width=256, steps=2, seed=0)
    assert roomy.plan.decoder_tile is None and set(roomy.memory) == {"text_encoder", "transformer", "vae_decoder"}
    assert all(v > 0 for v in roomy.memory.values())
    assert not pipe._sessions  # keep_loaded=False (what one `sana-edge run` does): released after each stage
    reused = SanaEdgePipeline.from_export(tiny_export)  # the API default: kept across calls when they fit
    reused.generate("a red fox", height=64, width=64, steps=1, seed=0)
    sessions = dict(reused._sessions)
    assert set(sessions) == set(reused.manifest.components) - {"vae_encoder"}  # the encoder loads for img2img only
    reused.generate("a red fox", height=64, width=64, steps=1, seed=1)
    assert all(reused._sessions[name] is session for name, session in sessions.items())  # not recreated
    # A budget just above what the weights and the other stages need forces tiles at 2048 px.
    plan = pipe.plan(2048, 2048)
    budget = max(plan.stage_bytes["text_encoder"], plan.stage_bytes["transformer"]) + (64 << 20)
    tiled = SanaEdgePipeline.from_export(tiny_export, max_memory=budget)
    tight = tiled.plan(2048, 2048)
    assert tight.decoder_tile is not None and tight.decoder_tile < 64
    kept = SanaEdgePipeline.from_export(tiny_export, keep_loaded=True)
    kept.generate("a red fox", height=256, width=256, steps=1, seed=0)
    assert set(kept._sessions) == set(kept.manifest.components) - {"vae_encoder"}


def test_tiled_run_through_the_pipeline_is_finite(tiny_export):
    from sana_edge.pipeline import SanaEdgePipeline

    pipe = SanaEdgePipeline.from_export(tiny_export)
    latents = pipe.generate("a red fox", height=512, width=512, steps=2, seed=0).latents
    image = pipe.decode(latents, tile=8)
    assert image.shape == (1, 3, 512, 512) and np.isfinite(image).all()


@pytest.mark.parametrize("value,message", [("1MB", "below what the"), ("lots", "cannot read 'lots'")])
def test_cli_refuses_a_budget_no_plan_fits(tiny_export, tmp_path, capsys, value, message):
    from sana_edge.cli import main

    out = tmp_path / "x.png"
    code = main(["run", "a fox", "--model", str(tiny_export), "-o", str(out), "--max-memory", value,
                 "--height", "256", "--width", "256", "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# TensorRT: the backend reports whole-stage sizes (engine + device_memory_size_v2 + I/O buffers).
ENGINE_STAGES = {"text_encoder": int(1.4 * GiB), "transformer": int(1.3 * GiB), "vae_decoder": int(2.2 * GiB)}
INT4_WEIGHTS = dict(FULL_WEIGHTS, text_encoder=int(1.26 * GiB))


def test_tiles_never_go_below_the_engine_profile_minimum():
    from sana_edge.planner import StageSizes

    # Engines built with --min-size 1024 --decoder-tile 1024: the decoder takes 32x32 latents only.
    # On estimates alone a tight budget picks a smaller tile, which that engine would refuse
    # after the text encoder and all the steps had run.
    assert plan_memory(FULL, INT4_WEIGHTS, 2048, 2048, budget=4 * GiB, max_tile=32).decoder_tile < 32
    profile = StageSizes(INT4_WEIGHTS, min_tile=32)
    assert plan_memory(FULL, profile, 2048, 2048, budget=64 * GiB, max_tile=32).decoder_tile == 32
    with pytest.raises(UserError, match="decoder needs even with the smallest tile"):
        plan_memory(FULL, profile, 2048, 2048, budget=4 * GiB, max_tile=32)  # refused at plan time instead


def test_engine_stages_have_fixed_sizes_and_stay_loaded_when_they_fit():
    from sana_edge.planner import StageSizes

    engines = StageSizes(ENGINE_STAGES, engines=True, min_tile=16)
    base = 500 << 20  # the CUDA context
    plan = plan_memory(FULL, engines, 2048, 2048, budget=16 * GiB, base=base, max_tile=32)
    assert plan.decoder_tile == 32  # the largest the profile allows: smaller tiles would save nothing
    assert plan.stage_bytes == {k: v + base for k, v in ENGINE_STAGES.items()}  # no activation estimates on top
    assert plan.keep_loaded  # reloading an engine recompiles its kernels: kept, since all fit
    assert not plan_memory(FULL, engines, 2048, 2048, budget=4 * GiB, base=base, max_tile=32).keep_loaded
    with pytest.raises(UserError, match="vae_decoder engine needs|decoder engine needs"):
        plan_memory(FULL, engines, 1024, 1024, budget=2 * GiB, base=base, max_tile=32)


def test_plan_is_checked_against_the_engines_before_any_work(tiny_export):
    from sana_edge.manifest import load_manifest
    from sana_edge.pipeline import SanaEdgePipeline
    from sana_edge.planner import StageSizes

    class EngineSizedBackend:
        """Answers the planner as the TensorRT backend does; loading anything fails the test."""
        name = "tensorrt"
        loaded: list = []

        def stage_bytes(self, manifest):
            return StageSizes(ENGINE_STAGES, engines=True, min_tile=16)

        def memory_in_use(self):
            return 500 << 20

        def memory_budget(self):
            return 2 * GiB

        def max_decoder_tile(self, manifest):
            return 16

        def check_size(self, manifest, height, width):
            pass

        def load_component(self, manifest, name, low_memory=False):
            self.loaded.append(name)
            raise AssertionError("a stage ran before the plan was checked")

    pipe = SanaEdgePipeline(load_manifest(tiny_export), EngineSizedBackend())
    with pytest.raises(UserError, match="engine needs"):
        pipe.generate("a red fox", height=1024, width=1024, steps=20, seed=0)
    assert EngineSizedBackend.loaded == []
