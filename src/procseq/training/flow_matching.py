"""Rectified flow, written once (minRF-short). The time convention of Flux and SD3:

    t = 1 (sigma = 1) is pure noise, t = 0 is data,
    x_t = (1 - t) * x0 + t * noise,
    the model predicts the velocity  v = noise - x0  (so  dx/dt = v  and Euler steps go from t=1 down to 0).
"""

from __future__ import annotations

from typing import Literal

import torch

TimestepScheme = Literal["logit_normal", "uniform", "shifted"]


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Resolution shift of SD3/FLUX: ``t' = s*t / (1 + (s-1)*t)`` (``s > 1`` moves mass towards noise)."""
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(
    batch_size: int,
    scheme: TimestepScheme = "logit_normal",
    generator: torch.Generator | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training times in (0, 1), shape ``(batch_size,)``.

    ``logit_normal``: ``sigmoid(N(mean, std))`` (SD3); ``uniform``: U(0, 1); ``shifted``: uniform then
    :func:`shift_time` by `shift` (FLUX). `shift` also applies after ``logit_normal`` when != 1.
    """
    if scheme == "logit_normal":
        t = torch.sigmoid(torch.randn(batch_size, generator=generator) * std + mean)
    elif scheme in ("uniform", "shifted"):
        t = torch.rand(batch_size, generator=generator)
    else:
        raise ValueError(f"Unknown timestep scheme {scheme!r}; use logit_normal, uniform or shifted.")
    if shift != 1.0:
        t = shift_time(t, shift)
    return t.clamp(1e-5, 1 - 1e-5).to(device)


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - t) * x0 + t * noise`` with `t` of shape ``(batch,)``."""
    t = _expand(t, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target ``noise - x0``."""
    return noise - x0


def flow_matching_loss(
    pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error of the predicted velocity, optionally only over tokens where `token_mask` is true.

    Args:
        pred, x0, noise: `torch.Tensor` of shape `(batch, seq, channels)` (packed tokens) or any equal shape.
        token_mask: optional `(batch, seq)` or `(seq,)` boolean mask of the tokens that count.
    """
    err = (pred.float() - velocity_target(x0, noise).float()) ** 2
    if token_mask is None:
        return err.mean()
    mask = token_mask.to(err.dtype)
    if mask.dim() == 1:
        mask = mask.expand(err.shape[0], -1)
    mask = mask.unsqueeze(-1).expand_as(err)
    return (err * mask).sum() / mask.sum().clamp_min(1)
