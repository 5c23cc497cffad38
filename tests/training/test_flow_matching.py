"""Rectified flow: the time convention, analytic velocity fields, timestep sampling, masked loss."""

from __future__ import annotations

import pytest
import torch

from procseq.training.flow_matching import (
    flow_matching_loss, interpolate, sample_timesteps, shift_time, velocity_target,
)


def test_convention_t1_is_noise_t0_is_data() -> None:
    x0, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    assert torch.allclose(interpolate(x0, noise, torch.zeros(3)), x0)
    assert torch.allclose(interpolate(x0, noise, torch.ones(3)), noise)
    t, dt = torch.full((3,), 0.4), 1e-3  # the target is the time derivative of the path
    deriv = (interpolate(x0, noise, t + dt) - interpolate(x0, noise, t)) / dt
    assert torch.allclose(deriv, velocity_target(x0, noise), atol=1e-2)


@pytest.mark.parametrize("steps", [1, 3, 17])
def test_the_samplers_euler_step_with_the_exact_field_recovers_the_data_point(steps: int) -> None:
    """The scheduler the pipelines sample with, on a field with a known solution (one data point a)."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    a = torch.tensor([2.0, -1.0, 0.5])  # the optimal field is v(x, t) = (x - a) / t
    x = torch.randn(3)
    sched = FlowMatchEulerDiscreteScheduler(shift=1.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps).tolist())
    for t, sigma in zip(sched.timesteps, sched.sigmas):
        x = sched.step((x - a) / sigma, t, x, return_dict=False)[0]
    assert torch.allclose(x, a, atol=1e-5)


def test_timestep_sampling() -> None:
    g = torch.Generator().manual_seed(0)
    for scheme in ("logit_normal", "uniform", "shifted"):
        t = sample_timesteps(4096, scheme, g)
        assert t.shape == (4096,) and t.min() > 0 and t.max() < 1
    ln = sample_timesteps(4096, "logit_normal", torch.Generator().manual_seed(0))
    assert abs(ln.median().item() - 0.5) < 0.03
    shifted = sample_timesteps(4096, "shifted", torch.Generator().manual_seed(0), shift=3.0)
    assert shifted.mean() > 0.6  # shift > 1 moves mass towards noise
    a = sample_timesteps(8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, sample_timesteps(8, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="Unknown timestep scheme"):
        sample_timesteps(2, "cosine")  # type: ignore[arg-type]


def test_shift_functions() -> None:
    t = torch.linspace(0, 1, 11)
    assert torch.allclose(shift_time(t, 1.0), t)
    assert shift_time(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)


def test_loss_is_zero_for_the_target_and_masks_tokens() -> None:
    x0, noise = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    target = velocity_target(x0, noise)
    assert flow_matching_loss(target, x0, noise).item() == 0
    pred = target.clone()
    pred[:, 3:] += 10.0  # wrong only on tokens 3..5
    mask = torch.tensor([True, True, True, False, False, False])
    assert flow_matching_loss(pred, x0, noise, mask).item() == 0
    assert flow_matching_loss(pred, x0, noise).item() == pytest.approx(50.0)
