"""How adaptive steps make an inserted frame: from both neighbours through known frames, or their average.

ProcessMaker inserts with a model conditioned on both neighbours (cells i-1 and i+1 known, DESIGN.md #10).
:class:`PipelineInterpolator` is that call on any :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline`,
in one of two contexts: ``pair`` (a 3-frame generation, cells 0 and 2 known) or ``sequence`` (the whole sequence
with the gap as its one free cell, every other frame known, as a base that learnt random known sets in place was
trained). What conditioned it (the context, the known-frames mode, and the condition LoRA only when it was
actually applied) is reported by :meth:`PipelineInterpolator.describe`, so a record never names a LoRA that was
not used. :func:`average_interpolator` is the model-free baseline (the neighbours' pixel average); :func:`fill`
makes the frame of a gap with either.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from PIL import Image

Interpolator = Callable[[Image.Image, Image.Image, list[str], int], Image.Image]
"""``(left, right, [left caption, new caption, right caption], seed) -> the frame between them``."""
CONTEXTS = ("pair", "sequence")


def lora_applied(settings: dict[str, Any], lora: dict[str, Any] | None) -> str | None:
    """The condition LoRA's path when a known-frames call used it, else None.

    A ``concat`` call runs the condition pass with the LoRA on; an ``inplace`` call uses it only when the LoRA
    was trained in place (a last-cell LoRA is switched off for other known sets, DESIGN.md #15).
    """
    if not lora or "known_mode" not in settings:
        return None
    mode = settings["known_mode"]
    return lora.get("path") if mode == "concat" or lora.get("mode") == mode else None


def window(num_cells: int, gap: int, limit: int) -> tuple[int, int]:
    """``(start, stop)`` of at most `limit` consecutive cells of `num_cells` that hold cell `gap`, centred on it."""
    size = min(num_cells, max(limit, 3))
    start = min(max(gap - size // 2, 0), num_cells - size)
    return start, start + size


class PipelineInterpolator:
    """Insertion through the known-frames mechanism, the new cell captioned with the new step.

    Args:
        pipe: a :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` (its condition LoRA loads on use).
        prompt, domain: the sequence's prompt and domain.
        context: ``pair`` (3 frames, cells 0 and 2 known) or ``sequence`` (the whole sequence, at most the model's
            ``max_frames`` cells around the gap, every frame but the gap known; :meth:`between`).
        base_only: switch the pipeline's multi-domain adapters off for the call (the base and its condition LoRA).
        call_kwargs: more pipeline arguments (``num_inference_steps``, ``true_cfg_scale``, ``adapter_weights``...).
    """

    def __init__(self, pipe: Any, prompt: str, domain: str, context: str = "pair", base_only: bool = False,
                 **call_kwargs: Any):
        if context not in CONTEXTS:
            raise ValueError(f"Unknown insertion context {context!r}; use one of {', '.join(CONTEXTS)}.")
        self.pipe, self.prompt, self.domain, self.call_kwargs = pipe, prompt, domain, call_kwargs
        self.context, self.base_only = context, base_only
        self.last: dict[str, Any] = {}

    def _generate(self, frames: dict[int, Image.Image], captions: list[str], cell: int, seed: int) -> Image.Image:
        """Cell `cell` of ``pipe(prompt, frames=len(captions), known=frames, captions=captions)``."""
        from procseq.adapters import adapter_layers, disabled

        off = self.base_only and adapter_layers(self.pipe.transformer)
        size = next(iter(frames.values())).size[0]
        with disabled(self.pipe.transformer) if off else nullcontext():
            out = self.pipe(self.prompt, domain=self.domain, frames=len(captions), frame_size=size, known=frames,
                            captions=captions, generator=torch.Generator("cpu").manual_seed(seed), **self.call_kwargs)
        settings = out.metadata[0] if out.metadata else {}
        self.last = {"context": self.context, "known_frames": settings.get("known_frames"),
                     "known_mode": settings.get("known_mode"),
                     "condition_lora": lora_applied(settings, getattr(self.pipe, "condition_lora", None))}
        return out.frames[0][cell]

    def __call__(self, left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
        """The middle frame of ``pipe(prompt, frames=3, known={0: left, 2: right})``."""
        return self._generate({0: left, 2: right}, list(captions), 1, seed)

    def between(self, frames: list[Image.Image], captions: list[str], i: int, caption: str, seed: int) -> Image.Image:
        """The frame to insert between ``frames[i]`` and ``frames[i + 1]`` with `caption`, in this context."""
        if self.context == "pair":
            return self(frames[i], frames[i + 1], [captions[i], caption, captions[i + 1]], seed)
        cells: list[Image.Image | None] = [*frames[:i + 1], None, *frames[i + 1:]]
        texts = [*captions[:i + 1], caption, *captions[i + 1:]]
        start, stop = window(len(cells), i + 1, int(getattr(self.pipe.defaults, "max_frames", 16)))
        known = {j - start: f for j, f in enumerate(cells[start:stop], start) if f is not None}
        return self._generate(known, texts[start:stop], i + 1 - start, seed)

    def describe(self) -> dict[str, Any]:
        """What the last insertion used: ``model``, context, known cells, mode, the LoRA applied (None: the base
        alone)."""
        return {"kind": "model", "context": self.context, **self.last}


def average_interpolator(left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
    """A model-free insertion: the pixel average of the two neighbours (a baseline, and a fallback)."""
    return Image.blend(left.convert("RGB"), right.convert("RGB"), 0.5)


INSERTIONS = ("average", "model", "sequence")
"""The insertions by name: the neighbours' average, the model from both neighbours (context ``pair``), the model from
the whole sequence (context ``sequence``)."""


def make_insertion(kind: str, pipe: Any, prompt: str, domain: str, **kwargs: Any) -> Interpolator:
    """The insertion named `kind` (:data:`INSERTIONS`); `kwargs` go to :class:`PipelineInterpolator`."""
    if kind not in INSERTIONS:
        raise ValueError(f"Unknown insertion {kind!r}; choose from {', '.join(INSERTIONS)}.")
    if kind == "average":
        return average_interpolator
    return PipelineInterpolator(pipe, prompt, domain, context="pair" if kind == "model" else "sequence", **kwargs)


def fill(interpolate: Interpolator, frames: list[Image.Image], captions: list[str], i: int, caption: str,
         seed: int) -> Image.Image:
    """The frame `interpolate` makes between ``frames[i]`` and ``frames[i + 1]`` (captioned `caption`): through
    its ``between`` when it reads the whole sequence, else from the two neighbours."""
    if hasattr(interpolate, "between"):
        return interpolate.between(list(frames), list(captions), i, caption, seed)
    return interpolate(frames[i], frames[i + 1], [captions[i], caption, captions[i + 1]], seed)


__all__ = ["CONTEXTS", "INSERTIONS", "Interpolator", "PipelineInterpolator", "average_interpolator", "fill",
           "lora_applied", "make_insertion", "window"]
