"""Position-id builders for extra token groups and the regional mode (pure functions).

Grid mode places every token by its place in the serpentine grid (:func:`procseq.layout.grid_position_ids`).
The regional mode (CookAnything) holds the frames one after another, each its own region, and uses
*flexible* ids: inside each frame the 2-D positions restart at 0 (the positions a single frame has), and
the step index goes on the first axis, ``[k, row, col]``, so any number of frames keeps the position range
the model knows. The regional token order is that of a one-column serpentine strip
(:func:`region_layout`), so known-frame indices and overwrites carry over unchanged.
"""


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


def region_layout(num_frames: int) -> GridLayout:
    """The regional mode's token order as a layout: a one-column strip, frame ``k``'s tokens at
    ``k * frame_tokens**2 ... (k + 1) * frame_tokens**2``, row-major inside the frame."""
    return GridLayout(num_frames, num_frames, 1)


def flexible_position_ids(num_frames: int, frame_tokens: int) -> torch.Tensor:
    """Flexible ids ``(num_frames * frame_tokens**2, 3)`` = ``[k, row, col]`` with row, col restarting in every frame.

    Args:
        num_frames: the number of frames (regions), any count.
        frame_tokens: tokens per frame side.
    """
    local = torch.arange(frame_tokens, dtype=torch.float32)
    frame = torch.zeros(frame_tokens, frame_tokens, 3)
    frame[..., 1] = local[:, None]
    frame[..., 2] = local[None, :]
    ids = frame.reshape(1, -1, 3).repeat(num_frames, 1, 1)
    ids[..., 0] = torch.arange(num_frames, dtype=torch.float32)[:, None]
    return ids.reshape(-1, 3)


def regional_grid_ids(num_frames: int, frame_tokens: int) -> torch.Tensor:
    """The grid-mode ids in the regional token order ``(num_frames * frame_tokens**2, 3)``: frame ``k``'s tokens get
    the ids of its cell in the default serpentine grid (the "grid ids instead of flexible ids" ablation)."""
    grid = GridLayout.for_frames(num_frames)
    return grid_position_ids(grid, frame_tokens)[frame_token_indices(grid, frame_tokens).reshape(-1)]


__all__ = ["flexible_position_ids", "known_position_ids", "known_token_indices", "known_token_mask",
           "region_layout", "regional_grid_ids"]
