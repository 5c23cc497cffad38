"""Fixtures of the known-frames tests: the micro pipeline as an ImageToSequencePipeline, a finished image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture()
def recraft_pipe(tiny_pipe):
    """ImageToSequencePipeline on the micro components (shared, not copied)."""
    from procseq.pipelines.image_to_sequence import ImageToSequencePipeline

    pipe = ImageToSequencePipeline.from_process_pipeline(tiny_pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def finished() -> Image.Image:
    """A 16x16 picture: a red square on white."""
    arr = np.full((16, 16, 3), 255, np.uint8)
    arr[4:12, 4:12] = (200, 30, 30)
    return Image.fromarray(arr)
