"""Position-id builders for extra token groups (pure functions over the serpentine layout)."""

from __future__ import annotations

import torch

from procseq.layout import GridLayout, frame_token_indices, grid_position_ids


def condition_position_ids(layout: GridLayout, frame_tokens: int, frame: int = -1) -> torch.Tensor:
    """Position ids ``(frame_tokens**2, 3)`` that place condition tokens on one frame's grid cell.

    The ids are exactly those of the cell's own tokens in :func:`procseq.layout.grid_position_ids`
    (row-major inside the cell), so a clean condition image of one frame is spatially aligned with
    the cell it conditions (OminiControl's spatial conditioning). Default: the final frame's cell.

    Args:
        layout: the grid layout of the main sequence.
        frame_tokens: tokens per frame side.
        frame: which frame's cell (negative counts from the end).
    """
    index = frame_token_indices(layout, frame_tokens)[frame]
    return grid_position_ids(layout, frame_tokens)[index]


def cell_token_mask(layout: GridLayout, frame_tokens: int, frame: int = -1) -> torch.Tensor:
    """Boolean mask ``(seq,)`` over the packed grid tokens that is true on `frame`'s cell."""
    mask = torch.zeros(layout.rows * layout.cols * frame_tokens**2, dtype=torch.bool)
    mask[frame_token_indices(layout, frame_tokens)[frame]] = True
    return mask


__all__ = ["cell_token_mask", "condition_position_ids"]
