"""Sampling as pure functions over tensors (the black-forest-labs/flux style): the Euler loop."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

from procseq.conditioning.text import TextConditioning
from procseq.progress import denoise_step
from procseq.quiet import quiet_loading

with quiet_loading():  # the Flux pipeline module imports image processors procseq never uses
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps


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


def can_batch_cfg(cond: TextConditioning, negative: TextConditioning) -> bool:
    """Whether both CFG branches fit in one batch: same text length and the same text position ids."""
    return (cond.prompt_embeds.shape[1:] == negative.prompt_embeds.shape[1:]
            and cond.prompt_embeds.shape[0] == negative.prompt_embeds.shape[0]
            and torch.equal(cond.text_ids, negative.text_ids))


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
    batch_cfg: bool | None = None,
) -> torch.Tensor:
    """Integrate packed latents ``(B, seq, C)`` from noise (t=1) to data (t=0) with the scheduler's Euler step.

    The loop of ``diffusers.FluxPipeline`` (same timesteps, guidance and scheduler calls), with position
    ids and attention kwargs supplied by the caller. ``before_step(i, latents)``, when given, runs before
    each model call and returns the latents to use (in-place known frames, a recomputed condition
    branch); ``after_step(i, t, latents)`` runs after each scheduler step and returns the latents to
    continue with (progress, diffusers' ``callback_on_step_end``).

    With true CFG (`negative` given, ``true_cfg_scale > 1``) both branches run in **one** forward of
    batch ``2B`` when `batch_cfg` allows it (equal to two passes up to float rounding); two passes
    otherwise (bit-for-bit FluxPipeline). ``batch_cfg=None`` batches when it is safe: the two text
    encodings have the same shape and ids, and no regional mask is in `joint_attention_kwargs` (the negative
    branch's text has no step spans, so it needs a mask of its own); known-frame K/V and the step embedding
    broadcast to the doubled batch. ``True`` batches whenever the shapes allow it, ``False`` never.
    """
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full([1], guidance_scale or 0.0, device=latents.device, dtype=torch.float32)
        guidance = guidance.expand(latents.shape[0])
    do_true_cfg = negative is not None and true_cfg_scale > 1
    batchable = do_true_cfg and batch_cfg is not False and can_batch_cfg(cond, negative)
    both = None
    if batchable:
        both = TextConditioning(torch.cat([cond.prompt_embeds, negative.prompt_embeds]),
                                torch.cat([cond.pooled_prompt_embeds, negative.pooled_prompt_embeds]), cond.text_ids)
    amp = torch.autocast(latents.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    scheduler.set_begin_index(0)

    def velocity(c: TextConditioning, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        g = guidance if guidance is None or guidance.shape[0] == x.shape[0] else guidance.repeat(2)
        with amp:
            out = transformer(
                hidden_states=x, timestep=timestep / 1000, guidance=g,
                pooled_projections=c.pooled_prompt_embeds, encoder_hidden_states=c.prompt_embeds,
                txt_ids=c.text_ids, img_ids=img_ids, joint_attention_kwargs=joint_attention_kwargs,
                return_dict=False,
            )[0]
        return out.to(latents.dtype)

    for i, t in enumerate(timesteps):
        if before_step is not None:
            latents = before_step(i, latents)
        timestep = t.expand(latents.shape[0]).to(latents.dtype)
        batched = batchable and (batch_cfg is True or "region_mask" not in (joint_attention_kwargs or {}))
        if batched:  # (before_step may have just set this step's attention state)
            noise_pred, neg_pred = velocity(both, torch.cat([latents, latents]), timestep.repeat(2)).chunk(2)
        else:
            noise_pred = velocity(cond, latents, timestep)
            neg_pred = velocity(negative, latents, timestep) if do_true_cfg else None
        if neg_pred is not None:
            noise_pred = neg_pred + true_cfg_scale * (noise_pred - neg_pred)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        denoise_step(i, len(timesteps))  # the caller's progress bar, if one is open (procseq.progress)
        if callback is not None:
            callback(i)
        if after_step is not None:
            latents = after_step(i, t, latents)
    return latents
