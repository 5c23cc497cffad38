"""Conditioning assembled before denoising: known frames, step text, the per-call attention state."""

from procseq.conditioning.frames import KNOWN_MODES, KnownFrames, KnownMode, check_known_indices
from procseq.conditioning.sequence import SequenceConditioning

__all__ = ["KNOWN_MODES", "KnownFrames", "KnownMode", "SequenceConditioning", "check_known_indices"]
