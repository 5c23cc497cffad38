"""SequenceConditioning: everything the denoiser needs, assembled from a plan before denoising starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from procseq.conditioning.frames import KnownFrames, KnownMode
from procseq.conditioning.text import StepText
from procseq.layout import GridLayout
from procseq.conditioning.plan import Plan
from procseq.conditioning.text import TextConditioning


@dataclass
class SequenceConditioning:
    """The conditioning of one generation (DESIGN.md #9): plan -> this -> ``sampling.denoise``.

    Args:
        plans: one :class:`Plan` per sequence of the batch.
        layout: the grid layout of the frames.
        frame_size: frame side in pixels; `frame_tokens` its side in packed tokens.
        text: the prompt encoding; `negative`: the true-CFG negative prompt's, if any.
        img_ids: position ids of the image tokens ``(seq, 3)``.
        known: the known frames, if any, and `known_mode` how they condition (``concat`` | ``inplace``).
        step_text: the step captions' encoding with token spans (modes that read step text).
        step_spans: each step caption's ``(start, end)`` in `text` (the layouts that join the steps to the prompt).
        joint_attention_kwargs: the per-call attention state handed to the processors.
        layout_state: what a layout keeps for its own denoising loop (frame by frame: each plan's step text).
    """

    plans: list[Plan]
    layout: GridLayout
    frame_size: int
    frame_tokens: int
    text: TextConditioning
    img_ids: torch.Tensor
    negative: TextConditioning | None = None
    known: KnownFrames | None = None
    known_mode: KnownMode = "concat"
    step_text: StepText | None = None
    step_spans: list[tuple[int, int]] | None = None
    joint_attention_kwargs: dict[str, Any] = field(default_factory=dict)
    layout_state: dict[str, Any] = field(default_factory=dict)

    def before_step(self) -> Callable[[int, torch.Tensor], torch.Tensor] | None:
        """The per-step latent hook: in-place known frames overwrite their cells before every step."""
        if self.known is None or self.known_mode != "inplace":
            return None
        known, layout = self.known, self.layout
        return lambda _i, latents: known.overwrite(latents, layout)

    def finish(self, latents: torch.Tensor) -> torch.Tensor:
        """The final latents with in-place known cells written once more (the last step moved them)."""
        hook = self.before_step()
        return hook(-1, latents) if hook is not None else latents


__all__ = ["SequenceConditioning"]
