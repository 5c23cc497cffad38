"""Position-id builders for extra token groups (pure functions over the serpentine layout)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from procseq.layout import GridLayout, frame_token_indices, grid_position_ids


def known_token_indices(layout: GridLayout, frame_tokens: int, frames: Sequence[int]) -> torch.Tensor:
    """Indices ``(len(frames) * frame_tokens**2,)`` into the packed grid tokens of the cells of `frames`.

    The order is frame by frame (as given), row-major inside each cell: the order in which
    :func:`procseq.layout.pack_latents` packs each frame's own latent, so ``grid_tokens[:, idx]`` and the
    concatenated per-frame tokens line up one to one.
    """
    cells = frame_token_indices(layout, frame_tokens)
    return torch.cat([cells[k] for k in frames]) if len(frames) else torch.zeros(0, dtype=torch.long)


def known_position_ids(layout: GridLayout, frame_tokens: int, frames: Sequence[int]) -> torch.Tensor:
    """Position ids ``(len(frames) * frame_tokens**2, 3)`` that place known-frame tokens on their cells.

    The ids are exactly those of the cells' own tokens in :func:`procseq.layout.grid_position_ids`, so a
    clean known frame is spatially aligned with the cell it stands for (OminiControl's spatial
    conditioning, generalised from ReCraft's final cell to any cells).
    """
    return grid_position_ids(layout, frame_tokens)[known_token_indices(layout, frame_tokens, frames)]


def known_token_mask(layout: GridLayout, frame_tokens: int, frames: Sequence[int]) -> torch.Tensor:
    """Boolean mask ``(seq,)`` over the packed grid tokens that is true on the cells of `frames`."""
    mask = torch.zeros(layout.rows * layout.cols * frame_tokens**2, dtype=torch.bool)
    mask[known_token_indices(layout, frame_tokens, frames)] = True
    return mask


__all__ = ["known_position_ids", "known_token_indices", "known_token_mask"]
