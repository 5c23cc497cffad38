"""Known-frame position ids sit on their own cells of the serpentine grid, in packing order."""

from __future__ import annotations

import pytest
import torch

from procseq.attention.rope import known_position_ids, known_token_indices, known_token_mask
from procseq.layout import GridLayout, frame_token_indices, grid_position_ids, pack_latents


@pytest.mark.parametrize("frames, known", [(4, (3,)), (7, (0, 1, 2)), (9, (3, 5)), (9, (0, 4, 8))])
def test_known_ids_are_their_cells_ids(frames: int, known: tuple[int, ...]) -> None:
    layout, t = GridLayout.for_frames(frames), 2
    ids = known_position_ids(layout, t, known)
    assert ids.shape == (len(known) * t * t, 3) and torch.equal(ids[:, 0], torch.zeros(len(ids)))
    for j, k in enumerate(known):
        r, c = layout.cell(k)
        block = ids[j * t * t:(j + 1) * t * t]
        assert sorted(block[:, 1].long().unique().tolist()) == [r * t, r * t + 1]
        assert sorted(block[:, 2].long().unique().tolist()) == [c * t, c * t + 1]
        assert torch.equal(block, grid_position_ids(layout, t)[frame_token_indices(layout, t)[k]])


def test_known_tokens_line_up_with_each_frame_packed_alone() -> None:
    """Cutting a frame's cell out of the packed grid gives that frame's own packed latent."""
    layout, t = GridLayout.for_frames(9), 2
    grid = torch.randn(1, 4, layout.rows * 2 * t, layout.cols * 2 * t)
    tokens = pack_latents(grid)
    for k in (0, 4, 5, 8):
        r, c = layout.cell(k)
        alone = pack_latents(grid[:, :, r * 2 * t:(r + 1) * 2 * t, c * 2 * t:(c + 1) * 2 * t])
        assert torch.equal(tokens[:, known_token_indices(layout, t, [k])], alone)


def test_mask_marks_exactly_the_known_cells() -> None:
    layout = GridLayout.for_frames(9)
    mask = known_token_mask(layout, 2, (0, 8))
    assert mask.shape == (36,) and mask.sum() == 8
    assert mask[frame_token_indices(layout, 2)[0]].all() and mask[frame_token_indices(layout, 2)[8]].all()
