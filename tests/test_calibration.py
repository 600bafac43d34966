"""Calibration records every trajectory: the pipeline releases each stage after a run, so the
recording must survive the sessions being reloaded."""

from __future__ import annotations


def test_every_trajectory_and_step_is_recorded(tiny_export):
    from sana_edge.quant.calibration import collect

    feeds = collect(tiny_export, ["a red fox", "a blue car", "a green tree"], 2, 64, 0, log=lambda _: None)
    assert len(feeds["transformer"]) == 3 * 2  # prompts x steps
    assert len(feeds["text_encoder"]) == 3 * 2  # each prompt and its negative
    assert len(feeds["vae_decoder"]) == 3
    first, last = feeds["transformer"][0], feeds["transformer"][-1]
    assert not (first["latents"] == last["latents"]).all()  # different trajectories
