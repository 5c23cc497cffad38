"""How adaptive steps make an inserted frame: from both neighbours through known frames, or their average.

ProcessMaker inserts with a model conditioned on both neighbours (cells i-1 and i+1 known, DESIGN.md #10).
:class:`PipelineInterpolator` is that call on any :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline`;
what conditioned it (the known-frames mode, and the condition LoRA only when it was actually applied) is
reported by :meth:`PipelineInterpolator.describe`, so a record never names a LoRA that was not used.
:func:`average_interpolator` is the model-free baseline (the neighbours' pixel average).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

Interpolator = Callable[[Image.Image, Image.Image, list[str], int], Image.Image]
"""``(left, right, [left caption, new caption, right caption], seed) -> the frame between them``."""


def lora_applied(settings: dict[str, Any], lora: dict[str, Any] | None) -> str | None:
    """The condition LoRA's path when a known-frames call used it, else None.

    A ``concat`` call runs the condition pass with the LoRA on; an ``inplace`` call uses it only when the LoRA
    was trained in place (a last-cell LoRA is switched off for other known sets, DESIGN.md #15).
    """
    if not lora or "known_mode" not in settings:
        return None
    mode = settings["known_mode"]
    return lora.get("path") if mode == "concat" or lora.get("mode") == mode else None


class PipelineInterpolator:
    """Insertion through the known-frames mechanism: a 3-frame generation with cells 0 and 2 known, the middle
    cell captioned with the new step.

    Args:
        pipe: a :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` (its condition LoRA loads on use).
        prompt, domain: the sequence's prompt and domain.
        call_kwargs: more pipeline arguments (``num_inference_steps``, ``true_cfg_scale``, ``adapter_weights``...).
    """

    def __init__(self, pipe: Any, prompt: str, domain: str, **call_kwargs: Any):
        self.pipe, self.prompt, self.domain, self.call_kwargs = pipe, prompt, domain, call_kwargs
        self.last: dict[str, Any] = {}

    def __call__(self, left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
        """The middle frame of ``pipe(prompt, frames=3, known={0: left, 2: right})``."""
        out = self.pipe(self.prompt, domain=self.domain, frames=3, frame_size=left.size[0],
                        known={0: left, 2: right}, captions=captions,
                        generator=torch.Generator("cpu").manual_seed(seed), **self.call_kwargs)
        settings = out.metadata[0] if out.metadata else {}
        self.last = {"known_frames": settings.get("known_frames"), "known_mode": settings.get("known_mode"),
                     "condition_lora": lora_applied(settings, getattr(self.pipe, "condition_lora", None))}
        return out.frames[0][1]

    def describe(self) -> dict[str, Any]:
        """What the last insertion used: ``model``, known cells, mode, the LoRA applied (None: the base alone)."""
        return {"kind": "model", **self.last}


def average_interpolator(left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
    """A model-free insertion: the pixel average of the two neighbours (a baseline, and a fallback)."""
    return Image.blend(left.convert("RGB"), right.convert("RGB"), 0.5)


__all__ = ["Interpolator", "PipelineInterpolator", "average_interpolator", "lora_applied"]
