"""Conditioning assembled before denoising: the plan, known frames, step text, the per-call attention state.

Names load on first use, so reading a :class:`~procseq.conditioning.plan.Plan` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "KNOWN_MODES": "procseq.conditioning.frames", "KnownFrames": "procseq.conditioning.frames",
    "KnownMode": "procseq.conditioning.frames", "check_known_indices": "procseq.conditioning.frames",
    "Plan": "procseq.conditioning.plan", "SequenceConditioning": "procseq.conditioning.sequence",
}

if TYPE_CHECKING:
    from procseq.conditioning.frames import KNOWN_MODES, KnownFrames, KnownMode, check_known_indices
    from procseq.conditioning.plan import Plan
    from procseq.conditioning.sequence import SequenceConditioning


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procseq.conditioning' has no attribute {name!r}")


__all__ = ["KNOWN_MODES", "KnownFrames", "KnownMode", "Plan", "SequenceConditioning", "check_known_indices"]
