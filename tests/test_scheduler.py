"""The numpy Flow-DPM-Solver equals diffusers' DPMSolverMultistepScheduler step by step."""

from __future__ import annotations

import numpy as np
import pytest

from sana_edge.errors import UserError
from sana_edge.export.configs import SANA_SCHEDULER_CONFIG
from sana_edge.scheduler import FlowDPMSolver, FlowDPMSolverConfig, flow_schedule


def _diffusers_scheduler(**overrides):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config({**SANA_SCHEDULER_CONFIG, **overrides})


@pytest.mark.parametrize("flow_shift", [1.0, 3.0, 4.0, 6.0])
@pytest.mark.parametrize("steps", [1, 2, 5, 20, 50])
def test_trajectory_matches_diffusers(steps, flow_shift):
    import torch

    reference = _diffusers_scheduler(flow_shift=flow_shift)
    reference.set_timesteps(steps)
    ours = FlowDPMSolver.from_diffusers_config(dict(reference.config))
    timesteps = ours.set_timesteps(steps)
    np.testing.assert_array_equal(timesteps, reference.timesteps.numpy())
    np.testing.assert_allclose(ours.sigmas, reference.sigmas.numpy(), atol=1e-7)

    rng = np.random.default_rng(steps * 10 + int(flow_shift))
    x_ref = x_ours = rng.standard_normal((1, 4, 6, 5)).astype(np.float32)
    for t in timesteps:
        # a velocity that depends on the state, as a model's does
        velocity = (np.tanh(x_ours) + 0.1 * rng.standard_normal(x_ours.shape)).astype(np.float32)
        x_ref = reference.step(torch.from_numpy(velocity), int(t), torch.from_numpy(x_ref), return_dict=False)[0].numpy()
        x_ours = ours.step(velocity, x_ours)
        assert np.max(np.abs(x_ours - x_ref)) <= 1e-5
        x_ours = x_ref  # compare every step from the same state


def test_sana_facts_test_vector():
    timesteps, sigmas = flow_schedule(FlowDPMSolverConfig(flow_shift=3.0), 20)
    assert timesteps.tolist() == [999, 982, 963, 944, 922, 899, 874, 847, 817, 785, 749, 710, 666, 617,
                                  562, 499, 428, 345, 249, 136]
    np.testing.assert_allclose(sigmas[:4], [0.99967, 0.98242, 0.96394, 0.94409], atol=1e-5)
    np.testing.assert_allclose(sigmas[-3:], [0.24979, 0.13624, 0.0], atol=1e-5)


def test_config_round_trip():
    config = FlowDPMSolverConfig.from_diffusers({**SANA_SCHEDULER_CONFIG, "flow_shift": 6.0})
    assert FlowDPMSolverConfig(**config.to_dict()) == config
    assert config.flow_shift == 6.0


@pytest.mark.parametrize("override", [
    {"use_flow_sigmas": False}, {"prediction_type": "epsilon"}, {"solver_order": 3},
    {"algorithm_type": "dpmsolver"}, {"use_karras_sigmas": True},
])
def test_unsupported_config_is_refused(override):
    with pytest.raises(UserError):
        FlowDPMSolverConfig.from_diffusers({**SANA_SCHEDULER_CONFIG, **override})


def test_steps_must_be_positive():
    with pytest.raises(UserError, match="steps"):
        flow_schedule(FlowDPMSolverConfig(), 0)
