"""Serpentine layout: round trips, adjacency, agreement with diffusers' packing and ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from procseq.layout import (
    GridLayout, adjacent, frame_token_indices, frames_to_grid, frames_to_grid_tensor, grid_position_ids,
    grid_shape, grid_tensor_to_frames, grid_to_frames, pack_latents, unpack_latents,
)

layouts = st.integers(1, 6).flatmap(
    lambda cols: st.integers(1, 6).flatmap(
        lambda rows: st.integers((rows - 1) * cols + 1, rows * cols).map(lambda n: GridLayout(n, rows, cols))
    )
)


def test_paper_layouts() -> None:
    assert GridLayout.for_frames(9).cells == ((0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2))
    assert GridLayout.for_frames(4).cells == ((0, 0), (0, 1), (1, 1), (1, 0))
    assert grid_shape(9) == (3, 3) and grid_shape(4) == (2, 2) and grid_shape(7) == (3, 3)
    assert GridLayout.for_frames(7).cells[-1] == (2, 0)


@given(layouts)
def test_temporal_neighbours_are_spatial_neighbours(layout: GridLayout) -> None:
    cells = layout.cells
    assert len(set(cells)) == layout.num_frames
    assert all(adjacent(a, b) for a, b in zip(cells, cells[1:]))
    for k, (r, c) in enumerate(cells):
        assert layout.frame_at(r, c) == k
    empty = [(r, c) for r in range(layout.rows) for c in range(layout.cols) if layout.frame_at(r, c) is None]
    assert len(empty) == layout.rows * layout.cols - layout.num_frames


@settings(max_examples=25, deadline=None)
@given(layouts, st.integers(1, 5))
def test_pixel_round_trip(layout: GridLayout, size: int) -> None:
    rng = np.random.default_rng(layout.num_frames)
    frames = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(layout.num_frames)]
    grid = frames_to_grid(frames, layout.rows, layout.cols)
    assert grid.size == (layout.cols * size, layout.rows * size)
    back = grid_to_frames(grid, layout.num_frames, layout.rows, layout.cols)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(frames, back))
    for r in range(layout.rows):
        for c in range(layout.cols):
            if layout.frame_at(r, c) is None:
                assert np.all(np.asarray(grid)[r * size : (r + 1) * size, c * size : (c + 1) * size] == 255)


@settings(max_examples=25, deadline=None)
@given(layouts)
def test_tensor_round_trip_and_token_indices(layout: GridLayout) -> None:
    t = 2  # tokens per frame side
    frames = torch.randn(layout.num_frames, 4, 2 * t, 2 * t)
    grid = frames_to_grid_tensor(frames, layout)
    assert torch.equal(grid_tensor_to_frames(grid, layout), frames)
    tokens = pack_latents(grid[None])
    assert torch.equal(unpack_latents(tokens, *grid.shape[1:]), grid[None])
    idx = frame_token_indices(layout, t)
    assert idx.shape == (layout.num_frames, t * t)
    for k in range(layout.num_frames):  # the tokens of frame k are the packing of frame k alone
        assert torch.equal(tokens[0, idx[k]], pack_latents(frames[k][None])[0])


def test_matches_diffusers_packing_and_ids() -> None:
    layout, t = GridLayout.for_frames(9), 3
    lat = torch.randn(2, 4, 2 * t * layout.rows, 2 * t * layout.cols)
    h, w = lat.shape[-2:]
    assert torch.equal(pack_latents(lat), FluxPipeline._pack_latents(lat, 2, 4, h, w))
    stock = FluxPipeline._prepare_latent_image_ids(1, h // 2, w // 2, "cpu", torch.float32)
    assert torch.equal(grid_position_ids(layout, t), stock)


@pytest.mark.parametrize("args", [(0, 1, 1), (5, 2, 2), (4, 3, 2), (2, 0, 2)])
def test_invalid_layouts_raise(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        GridLayout(*args)


def test_mismatched_frames_raise() -> None:
    with pytest.raises(ValueError, match="same size"):
        frames_to_grid([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 5))])
