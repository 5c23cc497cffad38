"""Layouts whose frames are denoised together in one token sequence (the grid and the regional layout).

Both place every frame's tokens in one sequence (:meth:`OnePassLayout.cells` says where), read one text, and run
one denoising pass; they differ in the cells, the position ids, the text and the per-step attention state, which
subclasses give. Known frames work the same in both: ``concat`` runs them in their own t = 0 pass with the ids of
their cells and hands the K/V to the main pass; ``inplace`` writes them over their cells before every step.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

import torch

from procseq.attention.processors import ConditionKV, run_condition_pass
from procseq.conditioning.loras import Pass
from procseq.conditioning.sequence import SequenceConditioning
from procseq.conditioning.text import TextConditioning
from procseq.layout import GridLayout, frames_to_grid_tensor, pack_latents
from procseq.layouts.base import Draws, Layout, LayoutBatch, LayoutInputs, Sampler, TextEncoder
from procseq.layouts.sampling import denoise, flux_timesteps

StepAttention = Callable[[int, dict[str, Any]], None]


class OnePassLayout(Layout):
    """The frames of a sequence as one token sequence, denoised in one pass (see the module docstring)."""

    @abstractmethod
    def cells(self, frames: int) -> GridLayout:
        """Where each frame's tokens sit in the packed sequence (a serpentine grid, a one-column strip)."""

    @abstractmethod
    def image_ids(self, frames: int, frame_tokens: int) -> torch.Tensor:
        """Position ids ``(frames * frame_tokens**2 (+ empty cells), 3)`` of the packed sequence."""

    @abstractmethod
    def text(self, encoder: TextEncoder, inputs: LayoutInputs, negative: bool = False
             ) -> tuple[TextConditioning, list[tuple[int, int]] | None]:
        """The text the model reads (the negative branch's with `negative`) and the step captions' spans in it."""

    def step_attention(self, cond: SequenceConditioning, num_steps: int) -> StepAttention | None:
        """``fn(i, attention)`` that sets denoising step `i`'s attention state (a region mask), or None."""
        return None

    def training_attention(self, cond: SequenceConditioning) -> dict[str, Any]:
        """The attention state of a training batch (the mask the sampler uses in its masked steps)."""
        return {}

    def batch_cfg(self, cond: SequenceConditioning, sampler: Sampler) -> bool | None:
        """Whether true CFG's two branches run in one batch (:func:`~procseq.layouts.sampling.denoise`)."""
        return sampler.batch_cfg

    def lora(self, pipe: Any, cond: SequenceConditioning, pass_: Pass = "main") -> AbstractContextManager[Any]:
        """Exactly the procseq LoRAs `pass_` of this layout wants on (:meth:`procseq.conditioning.loras.LoraRegistry.
        active`): in the grid, the condition LoRA in the known frames' pass (and in the main pass where its mode
        says)."""
        registry = getattr(pipe, "loras", None)
        known_mode = cond.known_mode if cond.known is not None else None
        return registry.active(self.name, pass_, known_mode) if registry is not None else nullcontext()

    # -- sampling ---------------------------------------------------------------------------------

    def prepare(self, encoder: TextEncoder, inputs: LayoutInputs, device: torch.device | str,
                dtype: torch.dtype) -> SequenceConditioning:
        """Text (prompt, then the steps where the layout reads them), ids of the cells, known frames."""
        text, spans = self.text(encoder, inputs)
        negative = self.text(encoder, inputs, negative=True)[0] if inputs.negative_prompts is not None else None
        frame_tokens = inputs.frame_tokens
        known = inputs.known
        if known is not None and known.frame_tokens != frame_tokens:
            raise ValueError(f"The known frames were encoded at {known.frame_tokens} tokens per side but the frames "
                             f"have {frame_tokens}; encode them at the frame size.")
        cells = self.cells(inputs.frames)
        img_ids = self.image_ids(inputs.frames, frame_tokens).to(device=device, dtype=text.prompt_embeds.dtype)
        return SequenceConditioning(plans=inputs.plans, layout=cells, frame_size=inputs.frame_size, frame_tokens=frame_tokens,
                                    text=text, img_ids=img_ids, negative=negative, known=known,
                                    known_mode=inputs.known_mode, step_spans=spans,
                                    joint_attention_kwargs=dict(inputs.joint_attention_kwargs))

    def denoise(self, pipe: Any, cond: SequenceConditioning, sampler: Sampler) -> torch.Tensor:
        """Noise -> packed latents ``(B, seq, 4C)`` of the whole sequence (known cells clean in ``inplace`` mode)."""
        device, transformer = pipe._execution_device, pipe.transformer
        height, width = cond.layout.grid_size(cond.frame_size)
        latents, _ = pipe.prepare_latents(len(cond.plans), transformer.config.in_channels // 4, height, width,
                                          cond.text.prompt_embeds.dtype, device, sampler.generator, sampler.latents)
        timesteps = flux_timesteps(pipe.scheduler, sampler.num_inference_steps, latents.shape[1], device)
        attention = dict(cond.joint_attention_kwargs)
        inplace = cond.before_step()
        per_step = self.step_attention(cond, len(timesteps))
        recompute: Callable[[], None] | None = None
        once: Callable[[], None] | None = None
        if cond.known is not None and cond.known_mode == "concat":
            known, kv = cond.known, ConditionKV()
            pooled = pipe.encode_text([""] * len(cond.plans), cond.text.prompt_embeds.shape[1]).pooled_prompt_embeds
            ids = cond.img_ids[known.token_index(cond.layout).to(device)]

            def branch() -> None:
                with self.lora(pipe, cond, "condition"):
                    kv.kv.update(run_condition_pass(transformer, known.tokens().to(pooled), ids, pooled,
                                                    pipe.guidance(sampler.guidance_scale)).kv)

            attention.update(kv.attention_kwargs("use"))
            if sampler.cache_condition:
                once = branch
            else:  # recomputed before every step (the same output, for the speed comparison)
                recompute = branch

        def before(i: int, lat: torch.Tensor) -> torch.Tensor:
            if per_step is not None:
                per_step(i, attention)
            if recompute is not None:
                recompute()
            return inplace(i, lat) if inplace is not None else lat

        # the dict itself goes to denoise (not a copy, not None): `before` sets each step's state (the region mask) in it
        hook = before if (per_step or recompute or inplace) is not None else None
        with self.lora(pipe, cond):  # the condition pass inside: each LoRA enters the model once per call
            if once is not None:
                once()
            latents = denoise(transformer, pipe.scheduler, latents, cond.img_ids, cond.text, timesteps,
                              guidance_scale=sampler.guidance_scale, negative=cond.negative,
                              true_cfg_scale=sampler.true_cfg_scale,
                              joint_attention_kwargs=attention if attention or per_step is not None else None,
                              autocast_dtype=sampler.autocast_dtype, before_step=hook, after_step=sampler.after_step,
                              batch_cfg=self.batch_cfg(cond, sampler))
        return cond.finish(latents)

    # -- training ---------------------------------------------------------------------------------

    def training_example(self, encoder: TextEncoder, inputs: LayoutInputs, frame_latents: torch.Tensor,
                         draws: Draws, blank: torch.Tensor | None = None,
                         whole: torch.Tensor | None = None) -> LayoutBatch:
        """The sequences' frames ``(B, n, C, h, w)`` placed in their cells (empty cells: `blank` ``(C, h, w)``, the
        latent of an empty frame, else zeros), or `whole` ``(B, C, rows * h, cols * w)`` as it is for a layout that
        :attr:`decodes_whole`; noise and times from `draws`, the loss on the unknown cells."""
        b, n, c, h, w = frame_latents.shape
        cells = self.cells(n)
        if whole is not None and self.decodes_whole:
            if tuple(whole.shape) != (b, c, cells.rows * h, cells.cols * w):
                raise ValueError(f"whole latents {tuple(whole.shape)} do not hold {n} frames of {(c, h, w)} in a "
                                 f"{cells.rows} x {cells.cols} grid.")
            arranged = whole.to(frame_latents)
        else:
            fill = blank if blank is not None else frame_latents.new_zeros(c, h, w)
            arranged = torch.stack([_place(frame_latents[i], cells, fill) for i in range(b)])
        x0 = pack_latents(arranged)
        noise = draws.noise(tuple(x0.shape[1:]), x0)
        cond = self.prepare(encoder, inputs, x0.device, x0.dtype)
        known = inputs.known
        loss_mask = known.loss_mask(cells).to(x0.device) if known is not None else None
        known_ids = cond.img_ids[known.token_index(cells).to(x0.device)] if known is not None else None
        return LayoutBatch(x0=x0, noise=noise, t=draws.times(x0), text=cond.text, img_ids=cond.img_ids.to(x0),
                           attention={**cond.joint_attention_kwargs, **self.training_attention(cond)},
                           loss_mask=loss_mask, known=known, known_mode=inputs.known_mode, known_cells=cells,
                           known_ids=known_ids, layout=self.name)


def _place(frames: torch.Tensor, cells: GridLayout, fill: torch.Tensor) -> torch.Tensor:
    """One sequence's frame latents ``(n, C, h, w)`` in `cells` -> ``(C, rows * h, cols * w)``, empty cells `fill`."""
    out = frames_to_grid_tensor(frames, cells, fill=0.0)
    if cells.rows * cells.cols > cells.num_frames:
        h, w = frames.shape[-2:]
        filled = {cells.cell(k) for k in range(cells.num_frames)}
        for r in range(cells.rows):
            for col in range(cells.cols):
                if (r, col) not in filled:
                    out[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = fill
    return out


__all__ = ["OnePassLayout"]
