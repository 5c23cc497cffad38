"""Sampling as pure functions over tensors (the black-forest-labs/flux style): the Euler loop."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps


@dataclass
class TextConditioning:
    """Encoded prompt: T5 tokens ``(B, L, D)``, their ids ``(L, 3)``, pooled CLIP vector ``(B, P)``."""

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    text_ids: torch.Tensor


def flux_timesteps(
    scheduler: FlowMatchEulerDiscreteScheduler, num_inference_steps: int, image_seq_len: int,
    device: torch.device | str,
) -> torch.Tensor:
    """The timesteps FluxPipeline uses: sigmas ``linspace(1, 1/N, N)`` shifted by the resolution-dependent mu."""
    sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    mu = calculate_shift(
        image_seq_len,
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
    return timesteps


def denoise(
    transformer: FluxTransformer2DModel,
    scheduler: FlowMatchEulerDiscreteScheduler,
    latents: torch.Tensor,
    img_ids: torch.Tensor,
    cond: TextConditioning,
    timesteps: torch.Tensor,
    guidance_scale: float | None = None,
    negative: TextConditioning | None = None,
    true_cfg_scale: float = 1.0,
    joint_attention_kwargs: dict[str, Any] | None = None,
    callback: Callable[[int], None] | None = None,
    autocast_dtype: torch.dtype | None = None,
    before_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    after_step: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Integrate packed latents ``(B, seq, C)`` from noise (t=1) to data (t=0) with the scheduler's Euler step.

    Bit-for-bit the loop of ``diffusers.FluxPipeline`` (same timesteps, guidance and scheduler calls),
    with position ids and attention kwargs supplied by the caller. ``before_step(i, latents)``, when
    given, runs before each model call and returns the latents to use (ReCraft's in-place condition,
    a recomputed condition branch); ``after_step(i, t, latents)`` runs after each scheduler step and
    returns the latents to continue with (progress, diffusers' ``callback_on_step_end``).
    """
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full([1], guidance_scale or 0.0, device=latents.device, dtype=torch.float32)
        guidance = guidance.expand(latents.shape[0])
    do_true_cfg = negative is not None and true_cfg_scale > 1
    amp = torch.autocast(latents.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    scheduler.set_begin_index(0)

    def velocity(c: TextConditioning, timestep: torch.Tensor) -> torch.Tensor:
        with amp:
            out = transformer(
                hidden_states=latents, timestep=timestep / 1000, guidance=guidance,
                pooled_projections=c.pooled_prompt_embeds, encoder_hidden_states=c.prompt_embeds,
                txt_ids=c.text_ids, img_ids=img_ids, joint_attention_kwargs=joint_attention_kwargs,
                return_dict=False,
            )[0]
        return out.to(latents.dtype)

    for i, t in enumerate(timesteps):
        if before_step is not None:
            latents = before_step(i, latents)
        timestep = t.expand(latents.shape[0]).to(latents.dtype)
        noise_pred = velocity(cond, timestep)
        if do_true_cfg:
            neg_pred = velocity(negative, timestep)
            noise_pred = neg_pred + true_cfg_scale * (noise_pred - neg_pred)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if callback is not None:
            callback(i)
        if after_step is not None:
            latents = after_step(i, t, latents)
    return latents
