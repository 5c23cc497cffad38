"""What every procseq pipeline returns: :class:`SequenceOutput`, a diffusers ``BaseOutput``.

Like ``FluxPipelineOutput`` it is indexable (``out[0]`` and ``out["images"]`` are the grids) and its first field
is ``images``; beside them it carries the frames, the step captions, the plans and per-sequence metadata.
It lives here and not in :mod:`procseq.sequence` because importing diffusers costs seconds, and the command
line reads :mod:`procseq.sequence` before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput
from PIL import Image

from procseq.sequence import Sequence

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
"""``output_type`` values: PIL images, float arrays ``(H, W, 3)`` in [0, 1], float tensors ``(3, H, W)`` in
[0, 1] (stacked per prompt, as diffusers' image processor returns them), or the packed latents."""


def _to_numpy(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])


@dataclass
class SequenceOutput(BaseOutput):
    """What the pipelines return, one entry per generated sequence (``len(prompts) * num_images_per_prompt``).

    Args:
        images: per sequence, the grid image the frames were cut from (a PIL list; ``(B, H, W, 3)`` array for
            ``output_type="np"``; ``(B, 3, H, W)`` tensor for ``"pt"``; the packed latents ``(B, seq, 4C)`` for
            ``"latent"``), as ``FluxPipelineOutput.images``.
        frames: per sequence, its frames in process order (PIL images, or an array / tensor per sequence).
        captions: per sequence, its step captions.
        metadata: per sequence, settings and timings (JSON-serialisable).
        plans: per sequence, the :class:`~procseq.conditioning.plan.Plan` the frames were made from.
        latents: the final packed latents, for ``output_type="latent"``.
    """

    images: Any = None
    frames: list[Any] | None = None
    captions: list[list[str]] | None = None
    metadata: list[dict[str, Any]] | None = None
    plans: list[Any] | None = None
    latents: Any = None

    @property
    def grid(self) -> Any:
        """The serpentine grids (the same object as :attr:`images`)."""
        return self.images

    def converted(self, output_type: str) -> SequenceOutput:
        """The same output with grids and frames as ``output_type`` (``"pil"``, ``"np"`` or ``"pt"``)."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}.")
        if output_type == "pil":
            return self
        conv = _to_numpy if output_type == "np" else (lambda ims: torch.from_numpy(_to_numpy(ims)).permute(0, 3, 1, 2))
        return SequenceOutput(images=conv(self.images), frames=[conv(f) for f in self.frames or []],
                              captions=self.captions, metadata=self.metadata, plans=self.plans)

    def sequences(self, prompts: list[str], domain: str) -> list[Sequence]:
        """View the output as :class:`~procseq.sequence.Sequence` objects (one per prompt); metadata goes to
        ``meta["settings"]``, and the words of the prompt the model cannot know (the plan's ``unknown_words``, when
        recorded) to ``meta["unknown_words"]``."""
        frames = self.frames or []
        plans = self.plans or [None] * len(frames)
        return [
            Sequence(frames=f, captions=c, prompt=p, domain=domain,
                     meta={"settings": dict(m), **({"unknown_words": list(plan.meta["unknown_words"])}
                                                   if plan is not None and "unknown_words" in plan.meta else {})})
            for f, c, p, m, plan in zip(frames, self.captions or [], prompts, self.metadata or [], plans)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Captions and metadata only (images are not JSON)."""
        return {"captions": self.captions, "metadata": self.metadata}


__all__ = ["OUTPUT_TYPES", "SequenceOutput"]
