"""Conditioning assembled before denoising: the plan, known frames, step text, the per-call attention state.

Names load on first use, so reading a :class:`~procseq.conditioning.plan.Plan` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procseq.lazy import lazy_exports

_EXPORTS = {
    "KNOWN_MODES": "procseq.conditioning.frames", "KnownFrames": "procseq.conditioning.frames",
    "KnownMode": "procseq.conditioning.frames", "check_known_indices": "procseq.conditioning.frames",
    "LoraRegistry": "procseq.conditioning.loras", "Plan": "procseq.conditioning.plan", "SequenceConditioning": "procseq.conditioning.sequence",
}

if TYPE_CHECKING:
    from procseq.conditioning.frames import KNOWN_MODES, KnownFrames, KnownMode, check_known_indices
    from procseq.conditioning.loras import LoraRegistry
    from procseq.conditioning.plan import Plan
    from procseq.conditioning.sequence import SequenceConditioning


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["KNOWN_MODES", "KnownFrames", "KnownMode", "LoraRegistry", "Plan", "SequenceConditioning", "check_known_indices"]
