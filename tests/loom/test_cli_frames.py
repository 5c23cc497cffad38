"""`--frames` is bounded by the layout: 64 for the grid and regional modes, 256 frame by frame; checked before loading."""

from __future__ import annotations

import pytest

from procseq.cli.common import check_sampling
from procseq.cli.generate import mode_max_frames


def test_frame_by_frame_takes_more_frames_than_the_grid() -> None:
    assert mode_max_frames("grid") == mode_max_frames("regional") == mode_max_frames(None) == 64
    assert mode_max_frames("frame-by-frame") == 256
    check_sampling(100, None, None, max_frames=mode_max_frames("frame-by-frame"))
    with pytest.raises(ValueError, match="--frames"):
        check_sampling(100, None, None, max_frames=mode_max_frames("grid"))
    with pytest.raises(ValueError, match="--frames"):
        check_sampling(257, None, None, max_frames=mode_max_frames("frame-by-frame"))
