"""Flexible ids restart inside every frame, with the step index on the first axis."""

from __future__ import annotations

import torch

from procseq.attention.rope import flexible_position_ids, region_layout, regional_grid_ids
from procseq.layout import GridLayout, frame_token_indices, grid_position_ids


def test_flexible_ids_restart_per_frame() -> None:
    ids = flexible_position_ids(14, 3)
    assert ids.shape == (14 * 9, 3)
    per_frame = ids.reshape(14, 9, 3)
    for k in range(14):
        assert torch.all(per_frame[k, :, 0] == k)
        assert torch.equal(per_frame[k, :, 1:], per_frame[0, :, 1:])  # the same 2-D positions in every frame
    assert per_frame[0, :, 1:].max() == 2 and per_frame[0, :, 1:].min() == 0
    single = grid_position_ids(GridLayout.for_frames(1), 3)
    assert torch.equal(per_frame[0], single)  # frame 0 is a plain single-frame image


def test_region_layout_is_frames_one_after_another() -> None:
    idx = frame_token_indices(region_layout(5), 2)
    assert torch.equal(idx, torch.arange(20).reshape(5, 4))


def test_grid_ids_in_regional_order() -> None:
    ids = regional_grid_ids(9, 2).reshape(9, 4, 3)
    grid = GridLayout.for_frames(9)
    r, c = grid.cell(5)  # frame 5 sits in row 1, col 1 of the serpentine 3x3 grid
    assert torch.equal(ids[5, 0], torch.tensor([0.0, 2 * r, 2 * c]))
