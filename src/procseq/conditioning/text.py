"""Per-step text as model input: each step caption encoded, concatenated, with its token span known.

The regional mode (CookAnything) and the frame-by-frame mode (Loom) feed step captions to the model;
the grid mode feeds the prompt only. :func:`encode_steps` is the one place step captions are encoded.

Beside each caption's own encoding ``C_n`` (the caption alone through T5), the whole plan is encoded
once as one text, the captions' tokens one after another (``C_all``), so that every step's tokens also
exist in the context of the whole process. CookAnything's cross-step consistency control fuses the two,
``C_n = C_n + lambda * C_all[slice_n]`` (:func:`fuse_steps`), with the slice of step ``n`` known because
both encodings use the same tokens in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from procseq.quiet import quiet_loading


@dataclass
class TextConditioning:
    """Encoded prompt: T5 tokens ``(B, L, D)``, their ids ``(L, 3)``, pooled CLIP vector ``(B, P)``."""

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    text_ids: torch.Tensor

    @classmethod
    def from_embeds(cls, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor,
                    device: torch.device | str, dtype: torch.dtype) -> TextConditioning:
        """Given encodings (``prompt_embeds`` ``(B, L, D)``, ``pooled_prompt_embeds`` ``(B, P)``) with the zero text ids
        FluxPipeline gives them."""
        if prompt_embeds.ndim != 3 or pooled_prompt_embeds.ndim != 2 \
                or prompt_embeds.shape[0] != pooled_prompt_embeds.shape[0]:
            raise ValueError(f"prompt_embeds must be (batch, tokens, dim) and pooled_prompt_embeds (batch, dim) with the "
                             f"same batch; got {tuple(prompt_embeds.shape)} and {tuple(pooled_prompt_embeds.shape)}.")
        embeds = prompt_embeds.to(device=device, dtype=dtype)
        return cls(embeds, pooled_prompt_embeds.to(device=device, dtype=dtype),
                   torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype))


@dataclass
class StepText:
    """Step captions encoded by T5 and concatenated without padding.

    Args:
        embeds: `(batch, total_tokens, D)`, the captions' tokens one after another, each caption encoded alone.
        spans: per step, ``(start, end)`` into `total_tokens` (end exclusive).
        text_ids: position ids `(total_tokens, 3)` (zeros, as Flux's text ids).
        whole: `(batch, total_tokens, D)`, the same tokens encoded together as one text (the whole plan), with
            the same spans; None when it was not encoded.
    """

    embeds: torch.Tensor
    spans: list[tuple[int, int]]
    text_ids: torch.Tensor
    whole: torch.Tensor | None = None
    lengths: list[int] | None = None
    """Real (unpadded) tokens of each step when the captions were padded to a common length; None: unpadded."""

    @property
    def real_spans(self) -> list[tuple[int, int]]:
        """Each step's real tokens ``(start, end)`` (the whole span unless the captions were padded)."""
        if self.lengths is None:
            return list(self.spans)
        return [(s, s + n) for (s, _e), n in zip(self.spans, self.lengths)]

    @property
    def num_steps(self) -> int:
        """Number of steps encoded."""
        return len(self.spans)

    @property
    def num_tokens(self) -> int:
        """Tokens of all steps together."""
        return self.embeds.shape[1]

    def fused(self, lam: float) -> StepText:
        """This step text with every step fused with its slice of the whole-plan encoding (:func:`fuse_steps`)."""
        if lam == 0:
            return self
        if self.whole is None:
            raise ValueError("Cross-step fusion needs the whole-plan encoding; encode with encode_steps(..., whole=True).")
        real = self.real_spans
        whole_spans, start = [], 0
        for s, e in real:
            whole_spans.append((start, start + e - s))
            start += e - s
        return replace(self, embeds=fuse_steps(self.embeds, self.whole, real, whole_spans, lam))


def fuse_steps(steps: torch.Tensor, whole: torch.Tensor, spans: list[tuple[int, int]],
               whole_spans: list[tuple[int, int]], lam: float) -> torch.Tensor:
    """Cross-step consistency (CookAnything): ``C_n = C_n + lam * C_all[slice_n]`` for every step ``n``.

    Args:
        steps: the per-step encodings concatenated, `(batch, total_tokens, D)`.
        whole: the whole-plan encoding `(batch, whole_tokens, D)`.
        spans: step ``n``'s ``(start, end)`` in `steps`; `whole_spans`: its slice in `whole` (same lengths).
        lam: the fusion weight (lambda; ~0.2 in the paper, 0 returns `steps` unchanged).

    Returns:
        `(batch, total_tokens, D)`; tokens outside every span are left as they are.
    """
    if len(spans) != len(whole_spans):
        raise ValueError(f"Got {len(spans)} step spans but {len(whole_spans)} whole-plan slices; give one per step.")
    out = steps.clone()
    for (s, e), (ws, we) in zip(spans, whole_spans):
        if e - s != we - ws:
            raise ValueError(f"Step span {(s, e)} and whole-plan slice {(ws, we)} differ in length.")
        out[:, s:e] = steps[:, s:e] + lam * whole[:, ws:we].to(steps.dtype)
    return out


@torch.no_grad()
def encode_steps(pipe: Any, captions: list[str], max_tokens_per_step: int, whole: bool = False,
                 pad: bool = False) -> StepText:
    """Encode every caption alone with the pipeline's T5 and keep only its real tokens (at least one).

    Args:
        pipe: a Flux pipeline (``tokenizer_2``, ``text_encoder_2``, ``_get_t5_prompt_embeds``).
        captions: one caption per step.
        max_tokens_per_step: T5 tokens kept per caption at most.
        whole: also encode the captions' tokens together as one text (:attr:`StepText.whole`, for fusion).
        pad: keep all `max_tokens_per_step` tokens of every caption (T5's padding included, as Flux pads the
            prompt), so every plan of `len(captions)` steps gives the same length and batches stack.
    """
    if not captions:
        raise ValueError("encode_steps needs at least one caption.")
    mask = pipe.tokenizer_2(captions, padding="max_length", truncation=True, max_length=max_tokens_per_step,
                            return_tensors="pt").attention_mask
    lengths = mask.sum(1).clamp(min=1).tolist()
    with quiet_loading():  # truncating a caption to its step tokens is intended, not worth diffusers' warning
        embeds = pipe._get_t5_prompt_embeds(prompt=captions, max_sequence_length=max_tokens_per_step,
                                            device=pipe._execution_device)
    pieces, spans, start = [], [], 0
    for i, n in enumerate(lengths):
        width = max_tokens_per_step if pad else n
        pieces.append(embeds[i, :width])
        spans.append((start, start + width))
        start += width
    joined = torch.cat(pieces).unsqueeze(0)
    together = encode_whole(pipe, captions, lengths, max_tokens_per_step).to(joined.dtype) if whole else None
    return StepText(joined, spans, joined.new_zeros(start, 3), together, list(lengths) if pad else None)


def encode_whole(pipe: Any, captions: list[str], lengths: list[int], max_tokens_per_step: int) -> torch.Tensor:
    """The captions' own tokens (each truncated as :func:`encode_steps` truncates it) encoded as one text ``(1, sum, D)``."""
    ids = pipe.tokenizer_2(captions, padding="max_length", truncation=True, max_length=max_tokens_per_step,
                           return_tensors="pt").input_ids
    joined = torch.cat([ids[i, :n] for i, n in enumerate(lengths)]).unsqueeze(0)
    encoder = pipe.text_encoder_2
    return encoder(joined.to(pipe._execution_device), output_hidden_states=False)[0].to(encoder.dtype)


def join_text(plan_embeds: torch.Tensor, steps: StepText) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The text the regional mode feeds the transformer: the plan's tokens, then every step's tokens.

    Args:
        plan_embeds: the whole-plan (prompt) encoding `(batch, plan_tokens, D)`, shared by every step.
        steps: the step text (`batch` 1, broadcast to `batch`).

    Returns:
        ``(embeds (batch, plan_tokens + total_tokens, D), text_ids (same length, 3), spans)``, the spans of the
        steps shifted past the plan's tokens.
    """
    b, plan_tokens = plan_embeds.shape[:2]
    step = steps.embeds.to(plan_embeds).expand(b, -1, -1)
    embeds = torch.cat([plan_embeds, step], dim=1)
    spans = [(s + plan_tokens, e + plan_tokens) for s, e in steps.spans]
    return embeds, plan_embeds.new_zeros(embeds.shape[1], 3), spans


def join_plan_steps(prompt: TextConditioning, steps: list[StepText]) -> tuple[TextConditioning, list[tuple[int, int]]]:
    """The prompt's tokens followed by each sequence's step tokens (one :class:`StepText` per sequence, all of one
    length: padded captions, or a batch of one), and the steps' spans in the joined text."""
    if len(steps) != prompt.prompt_embeds.shape[0]:
        raise ValueError(f"Got {len(steps)} step texts for a batch of {prompt.prompt_embeds.shape[0]} prompts.")
    if len({tuple(s.spans) for s in steps}) > 1:
        raise ValueError("The plans' step texts differ in length; pad them (step_tokens) or generate one at a time.")
    joined = [join_text(prompt.prompt_embeds[i:i + 1], s) for i, s in enumerate(steps)]
    embeds = torch.cat([j[0] for j in joined])
    text = TextConditioning(embeds, prompt.pooled_prompt_embeds, prompt.text_ids.new_zeros(embeds.shape[1], 3))
    return text, joined[0][2]


__all__ = ["StepText", "TextConditioning", "encode_steps", "encode_whole", "fuse_steps", "join_plan_steps",
           "join_text"]
