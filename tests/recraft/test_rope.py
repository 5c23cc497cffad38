"""Condition-token position ids sit on the final frame's cell of the serpentine grid."""

from __future__ import annotations

import pytest
import torch

from procseq.attention.rope import cell_token_mask, condition_position_ids
from procseq.layout import GridLayout, frame_token_indices, grid_position_ids


@pytest.mark.parametrize("frames", [4, 7, 9])
def test_condition_ids_are_the_final_cell_ids(frames: int) -> None:
    layout, t = GridLayout.for_frames(frames), 2
    ids = condition_position_ids(layout, t)
    r, c = layout.cell(frames - 1)
    assert ids.shape == (t * t, 3)
    assert torch.equal(ids[:, 0], torch.zeros(t * t))
    assert sorted(ids[:, 1].long().unique().tolist()) == [r * t, r * t + 1]
    assert sorted(ids[:, 2].long().unique().tolist()) == [c * t, c * t + 1]
    assert torch.equal(ids, grid_position_ids(layout, t)[frame_token_indices(layout, t)[-1]])


def test_cell_mask_marks_only_the_final_cell() -> None:
    layout = GridLayout.for_frames(9)
    mask = cell_token_mask(layout, 2)
    assert mask.sum() == 4 and mask.shape == (36,)
    assert mask[frame_token_indices(layout, 2)[-1]].all()
