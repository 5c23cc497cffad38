"""ProcessPipeline: a prompt becomes a procedural sequence (frames + captions) in one serpentine grid."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from diffusers import FluxPipeline

from procseq.adapters.routing import adapter_layers, route, unrouted
from procseq.layout import GridLayout, grid_position_ids, grid_to_frames
from procseq.models.loading import ModelDefaults
from procseq.pipelines.planning import Planner, template_plan
from procseq.pipelines.sampling import TextConditioning, denoise, flux_timesteps
from procseq.sequence import SequenceOutput


class ProcessPipeline(FluxPipeline):
    r"""Text-to-sequence on the FLUX.1 components.

    The frames of one process are generated together as one in-context grid in serpentine order
    (:mod:`procseq.layout`); for a plain prompt the grid is exactly what ``diffusers.FluxPipeline``
    generates at the grid's size. It loads any Flux checkpoint in diffusers folder format
    (``ProcessPipeline.from_pretrained``) and inherits FluxPipeline's prompt encoding, LoRA loading
    and CPU offload.

    Components are those of :class:`diffusers.FluxPipeline`.
    """

    _defaults: ModelDefaults | None = None

    @property
    def defaults(self) -> ModelDefaults:
        """Native frame size, frame limit and sampling defaults of the loaded checkpoint."""
        if self._defaults is None:
            name = getattr(self.config, "_name_or_path", None)
            folder = Path(name) if name and Path(name).is_dir() else None
            self._defaults = ModelDefaults.from_folder(folder)
        return self._defaults

    @defaults.setter
    def defaults(self, value: ModelDefaults) -> None:
        self._defaults = value

    @property
    def adapter_domains(self) -> list[str]:
        """Domains of the procseq adapters on the transformer (:mod:`procseq.adapters`); empty without any."""
        layers = adapter_layers(self.transformer)
        return list(next(iter(layers.values())).domain_names) if layers else []

    @property
    def known_domains(self) -> list[str]:
        """The base model's domains followed by its adapters' domains (empty: the model takes any name)."""
        base = list(self.defaults.domains)
        return base + [d for d in self.adapter_domains if d not in base] if base else []

    def adapter_routing(self, domain: str, adapter_weights: Mapping[str, float] | None = None
                        ) -> AbstractContextManager[Any]:
        """The routing of the procseq adapters for `domain` (a context manager; a no-op without adapters).

        * `adapter_weights` given: that mix of adapter domains (e.g. ``{"lego": 0.7, "clay": 0.3}``);
        * `domain` is an adapter domain: its ``B`` (asymmetric) or its rows (masked);
        * `domain` is a base domain: no routing, the exact base model;
        * an unseen domain: a masked LoRA's shared rows only (its domain mask removed), else the base.
        """
        names = self.adapter_domains
        if not names:
            if adapter_weights:
                raise ValueError("adapter_weights needs procseq adapters on the model; load a file first "
                                 "(load_pipeline(..., adapters=FILE) or --adapters FILE).")
            return nullcontext()
        if adapter_weights:
            return route(self.transformer, weights=dict(adapter_weights))
        if domain in names:
            return route(self.transformer, domains=domain)
        masked = next(iter(adapter_layers(self.transformer).values())).supports_unseen
        if domain not in self.defaults.domains and masked:
            return route(self.transformer, domains=domain, unseen="shared")
        return unrouted(self.transformer)

    def check_sequence_inputs(self, prompts: list[str], domain: str, frames: int, frame_size: int,
                              allow_unseen: bool = False) -> None:
        """Raise ``ValueError`` with the fix when a request cannot be generated."""
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("The prompt is empty; describe the finished artifact, e.g. 'a red lego house'.")
        if not domain or not isinstance(domain, str):
            raise ValueError("Pass the domain explicitly, e.g. domain='painting'.")
        known = self.known_domains
        if known and domain not in known and not allow_unseen:
            raise ValueError(f"Unknown domain {domain!r} for this model; choose one of: {', '.join(known)} "
                             f"(or allow_unseen=True to test generalisation to a new domain).")
        limit = self.defaults.max_frames
        if not 2 <= frames <= limit:
            raise ValueError(f"frames must be between 2 and {limit} for this model, got {frames}.")
        multiple = self.vae_scale_factor * 2
        if frame_size < multiple or frame_size % multiple:
            raise ValueError(f"frame_size must be a positive multiple of {multiple} for this model, got {frame_size}.")

    def text_length(self, texts: list[str]) -> int:
        """T5 tokens to encode `texts` with: the model's ``max_sequence_length``, or with
        ``text_padding="longest"`` (procseq.json) only as many as the longest of `texts` needs."""
        d = self.defaults
        if d.text_padding != "longest" or self.tokenizer_2 is None:
            return d.max_sequence_length
        ids = self.tokenizer_2(list(texts), truncation=True, max_length=d.max_sequence_length).input_ids
        return max(1, *(len(x) for x in ids))

    def encode_text(self, prompts: list[str], max_sequence_length: int) -> TextConditioning:
        """Encode prompts with CLIP (pooled) and T5 (tokens), as FluxPipeline does."""
        embeds, pooled, text_ids = self.encode_prompt(
            prompt=prompts, prompt_2=None, device=self._execution_device, max_sequence_length=max_sequence_length
        )
        return TextConditioning(embeds, pooled, text_ids)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        domain: str = "painting",
        frames: int = 9,
        frame_size: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        true_cfg_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
        captions: list[str] | None = None,
        planner: Planner = template_plan,
        joint_attention_kwargs: dict[str, Any] | None = None,
        autocast_dtype: torch.dtype | None = None,
        adapter_weights: Mapping[str, float] | None = None,
        allow_unseen: bool = False,
    ) -> SequenceOutput:
        r"""Generate one procedural sequence per prompt.

        Args:
            prompt: the finished artifact, e.g. ``"a red lego house"`` (or a list, one sequence each).
            domain: the process domain (``"painting"``, ``"lego"``...), an explicit argument.
            frames: number of steps (2..the model's ``max_frames``); laid out by ``GridLayout.for_frames``.
            frame_size: side of one frame in pixels (default: the model's native size).
            num_inference_steps, guidance_scale: sampling settings (default: the model's).
            negative_prompt, true_cfg_scale: true classifier-free guidance when ``true_cfg_scale > 1`` (default:
                the model's ``true_cfg_scale``; the negative prompt defaults to ``""``, the caption-dropout prompt).
            generator: torch generator(s) for the initial noise (deterministic per seed).
            latents: packed initial noise ``(B, seq, 4C)`` instead of sampling it.
            max_sequence_length: T5 tokens (default: the model's).
            captions: per-step captions; default: ``planner(prompt, domain, frames)``.
            planner: the step planner used when `captions` is None.
            joint_attention_kwargs: extra inputs for the attention processors.
            autocast_dtype: run the transformer under ``torch.autocast`` with this dtype (bf16 on CPU).
            adapter_weights: a mix of adapter domains instead of `domain`'s own adapter (see
                :meth:`adapter_routing`), e.g. ``{"lego": 0.7, "clay": 0.3}``.
            allow_unseen: accept a domain the model does not know (generalisation tests).

        Returns:
            :class:`~procseq.sequence.SequenceOutput` with frames, captions, grid and metadata per prompt.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        d = self.defaults
        frame_size = frame_size or d.frame_size_for(frames)
        steps = num_inference_steps or d.num_inference_steps
        guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
        true_cfg_scale = d.true_cfg_scale if true_cfg_scale is None else true_cfg_scale
        if true_cfg_scale > 1 and negative_prompt is None:
            negative_prompt = ""
        max_sequence_length = max_sequence_length or self.text_length(
            prompts + ([negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt or [])))
        self.check_sequence_inputs(prompts, domain, frames, frame_size, allow_unseen)
        if captions is not None and len(captions) != frames:
            raise ValueError(f"Got {len(captions)} captions for {frames} frames; pass one caption per frame.")

        t0 = time.perf_counter()
        layout = GridLayout.for_frames(frames)
        height, width = layout.grid_size(frame_size)
        device = self._execution_device
        cond = self.encode_text(prompts, max_sequence_length)
        negative = None
        if true_cfg_scale > 1 and negative_prompt is not None:
            neg = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
            negative = self.encode_text(neg, max_sequence_length)

        num_channels = self.transformer.config.in_channels // 4
        latents, _ = self.prepare_latents(
            len(prompts), num_channels, height, width, cond.prompt_embeds.dtype, device, generator, latents
        )
        frame_tokens = frame_size // (self.vae_scale_factor * 2)
        img_ids = grid_position_ids(layout, frame_tokens).to(device=device, dtype=cond.prompt_embeds.dtype)
        timesteps = flux_timesteps(self.scheduler, steps, latents.shape[1], device)
        t_encode = time.perf_counter()

        with self.progress_bar(total=len(timesteps)) as bar, self.adapter_routing(domain, adapter_weights):
            latents = denoise(
                self.transformer, self.scheduler, latents, img_ids, cond, timesteps,
                guidance_scale=guidance_scale, negative=negative, true_cfg_scale=true_cfg_scale,
                joint_attention_kwargs=joint_attention_kwargs, callback=lambda _: bar.update(),
                autocast_dtype=autocast_dtype,
            )
        t_denoise = time.perf_counter()
        grids = self.decode_grid(latents, height, width)
        self.maybe_free_model_hooks()
        t_end = time.perf_counter()

        settings = {
            "domain": domain, "frames": frames, "frame_size": frame_size, "grid": [layout.rows, layout.cols],
            "num_inference_steps": steps, "guidance_scale": guidance_scale, "true_cfg_scale": true_cfg_scale,
            **({"adapter_weights": dict(adapter_weights)} if adapter_weights else {}),
            "timings_s": {"encode": t_encode - t0, "denoise": t_denoise - t_encode, "decode": t_end - t_denoise,
                          "total": t_end - t0},
        }
        return SequenceOutput(
            frames=[grid_to_frames(g, frames, layout.rows, layout.cols) for g in grids],
            captions=[list(captions) if captions else planner(p, domain, frames) for p in prompts],
            grid=grids,
            metadata=[dict(settings) for _ in prompts],
        )

    def decode_grid(self, latents: torch.Tensor, height: int, width: int) -> list:
        """Packed latents ``(B, seq, 4C)`` -> grid images (PIL), as FluxPipeline decodes."""
        latents = self._unpack_latents(latents, height, width, self.vae_scale_factor)
        latents = (latents / self.vae.config.scaling_factor) + self.vae.config.shift_factor
        image = self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]
        return self.image_processor.postprocess(image, output_type="pil")
