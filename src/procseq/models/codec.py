"""The latent codec: pixels <-> the scaled VAE latents the transformer sees (one definition).

Flux normalises VAE latents as ``(z - shift_factor) * scaling_factor``; every encode and decode in
procseq (pipelines, latent caches, trainers) goes through these two functions.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def encode_pixels(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels ``(B, 3, H, W)`` in ``[-1, 1]`` -> scaled latents ``(B, C, H/s, W/s)`` (float32, on `pixels`' device).

    The posterior's mode is used (deterministic, as every Flux training recipe does).
    """
    z = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    return ((z - vae.config.shift_factor) * vae.config.scaling_factor).float().to(pixels.device)


def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(B, C, h, w)`` -> pixels ``(B, 3, h*s, w*s)`` in ``[-1, 1]`` (the VAE's dtype)."""
    z = latents / vae.config.scaling_factor + vae.config.shift_factor
    return vae.decode(z.to(vae.dtype), return_dict=False)[0]


__all__ = ["decode_latents", "encode_pixels"]
