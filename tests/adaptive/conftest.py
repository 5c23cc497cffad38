"""Fakes of the adaptive-steps tests: frames whose 'progress' is their gray level, features that read it back."""

from __future__ import annotations

import math
from collections.abc import Sequence as SequenceABC

import numpy as np
import pytest
import torch
from PIL import Image

from procseq.models.features import ImageFeatures

THETA = 0.15
"""Radians of feature rotation per unit of progress (small: cosine distance grows ~ with the gap squared)."""


def frame(value: float, size: int = 8) -> Image.Image:
    """A flat frame whose gray level encodes `value` (progress 0..10 -> 0..200)."""
    return Image.fromarray(np.full((size, size, 3), int(round(value * 20)), np.uint8))


def progress(image: Image.Image) -> float:
    """The progress a :func:`frame` encodes."""
    return float(np.asarray(image)[0, 0, 0]) / 20.0


class FakeExtractor:
    """A plug-in extractor: the global embedding and every patch are the progress as an angle; captions alike."""

    def __init__(self) -> None:
        self.calls = 0

    def image_features(self, frames: SequenceABC[Image.Image]) -> ImageFeatures:
        self.calls += 1
        v = torch.tensor([[math.cos(progress(f) * THETA), math.sin(progress(f) * THETA)] for f in frames])
        return ImageFeatures(embeds=v, patches=v[:, None, :].repeat(1, 4, 1))

    def text_features(self, texts: SequenceABC[str]) -> torch.Tensor:
        return torch.ones(len(texts), 3)  # every caption alike: the semantic term is 0 everywhere


def average(left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
    """An interpolator: the frame halfway between the two neighbours."""
    return frame((progress(left) + progress(right)) / 2, left.size[0])


def sequence(values: list[float]) -> tuple[list[Image.Image], list[str]]:
    """Frames of the given progress values and one caption per frame."""
    return [frame(v) for v in values], [f"step {v:g}" for v in values]


@pytest.fixture()
def fake() -> FakeExtractor:
    return FakeExtractor()
