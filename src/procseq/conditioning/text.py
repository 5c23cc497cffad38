"""Per-step text as model input: each step caption encoded, concatenated, with its token span known.

The regional mode (CookAnything) and the frame-by-frame mode (Loom) feed step captions to the model;
the grid mode feeds the prompt only. :func:`encode_steps` is the one place step captions are encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class StepText:
    """Step captions encoded by T5 and concatenated without padding.

    Args:
        embeds: `(batch, total_tokens, D)`, the captions' tokens one after another.
        spans: per step, ``(start, end)`` into `total_tokens` (end exclusive).
        text_ids: position ids `(total_tokens, 3)` (zeros, as Flux's text ids).
    """

    embeds: torch.Tensor
    spans: list[tuple[int, int]]
    text_ids: torch.Tensor

    @property
    def num_steps(self) -> int:
        """Number of steps encoded."""
        return len(self.spans)


@torch.no_grad()
def encode_steps(pipe: Any, captions: list[str], max_tokens_per_step: int) -> StepText:
    """Encode every caption alone with the pipeline's T5 and keep only its real tokens (at least one).

    Args:
        pipe: a Flux pipeline (``tokenizer_2``, ``_get_t5_prompt_embeds``).
        captions: one caption per step.
        max_tokens_per_step: T5 tokens kept per caption at most.
    """
    if not captions:
        raise ValueError("encode_steps needs at least one caption.")
    mask = pipe.tokenizer_2(captions, padding="max_length", truncation=True, max_length=max_tokens_per_step,
                            return_tensors="pt").attention_mask
    lengths = mask.sum(1).clamp(min=1).tolist()
    embeds = pipe._get_t5_prompt_embeds(prompt=captions, max_sequence_length=max_tokens_per_step,
                                        device=pipe._execution_device)
    pieces, spans, start = [], [], 0
    for i, n in enumerate(lengths):
        pieces.append(embeds[i, :n])
        spans.append((start, start + n))
        start += n
    joined = torch.cat(pieces).unsqueeze(0)
    return StepText(joined, spans, joined.new_zeros(start, 3))


__all__ = ["StepText", "encode_steps"]
