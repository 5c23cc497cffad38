"""Serpentine in-context grids: frames <-> grid image <-> packed latent tokens <-> grid position ids.

This is the one place the frame order is defined. Frame ``k`` of an ``R x C`` grid sits in row
``k // C``; even rows run left to right and odd rows right to left, so temporally adjacent frames are
always spatially adjacent (MakeAnything's serpentine layout)::

    3x3:  0 1 2      2x2:  0 1      7 frames in 3x3:  0 1 2
          5 4 3            3 2                        5 4 3
          6 7 8                                       6 . .

A partial last row is filled in its own serpentine direction; empty cells are blank (white in
pixel space). All functions are pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from PIL import Image

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class GridLayout:
    """A serpentine arrangement of `num_frames` frames in a `rows x cols` grid."""

    num_frames: int
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"A grid needs at least one frame, got num_frames={self.num_frames}.")
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"Grid rows and cols must be >= 1, got {self.rows}x{self.cols}.")
        if self.rows * self.cols < self.num_frames:
            raise ValueError(
                f"A {self.rows}x{self.cols} grid holds {self.rows * self.cols} frames, not {self.num_frames}; "
                "use more rows or columns."
            )
        if (self.rows - 1) * self.cols >= self.num_frames:
            raise ValueError(
                f"A {self.rows}x{self.cols} grid for {self.num_frames} frames leaves its last row empty; use fewer rows."
            )

    @classmethod
    def for_frames(cls, num_frames: int, cols: int | None = None) -> "GridLayout":
        """The default layout: the most square grid (4 -> 2x2, 9 -> 3x3, 7 -> 3x3 with a partial row)."""
        if num_frames < 1:
            raise ValueError(f"A grid needs at least one frame, got num_frames={num_frames}.")
        cols = cols or math.ceil(math.sqrt(num_frames))
        return cls(num_frames, math.ceil(num_frames / cols), cols)

    def cell(self, k: int) -> tuple[int, int]:
        """(row, col) of frame `k`."""
        if not 0 <= k < self.num_frames:
            raise IndexError(f"frame {k} is outside 0..{self.num_frames - 1}")
        r, i = divmod(k, self.cols)
        return (r, i) if r % 2 == 0 else (r, self.cols - 1 - i)

    @cached_property
    def cells(self) -> tuple[tuple[int, int], ...]:
        """(row, col) of every frame, in process order."""
        return tuple(self.cell(k) for k in range(self.num_frames))

    def frame_at(self, row: int, col: int) -> int | None:
        """The frame index in cell (row, col), or None for an empty cell of a partial last row."""
        i = col if row % 2 == 0 else self.cols - 1 - col
        k = row * self.cols + i
        return k if 0 <= row < self.rows and 0 <= col < self.cols and k < self.num_frames else None

    def grid_size(self, frame_size: int) -> tuple[int, int]:
        """(height, width) in pixels of the grid image for square frames of side `frame_size`."""
        return self.rows * frame_size, self.cols * frame_size


def grid_shape(num_frames: int) -> tuple[int, int]:
    """(rows, cols) of the default layout for `num_frames` frames."""
    layout = GridLayout.for_frames(num_frames)
    return layout.rows, layout.cols


def _layout(num_frames: int, rows: int | None, cols: int | None) -> GridLayout:
    if rows is None and cols is None:
        return GridLayout.for_frames(num_frames)
    if rows is None or cols is None:
        cols = cols or math.ceil(num_frames / rows)  # type: ignore[operator]
        rows = rows or math.ceil(num_frames / cols)
    return GridLayout(num_frames, rows, cols)


# ----------------------------------------------------------------------------------------------
# Pixel space (PIL)
# ----------------------------------------------------------------------------------------------


def frames_to_grid(
    frames: list[Image.Image], rows: int | None = None, cols: int | None = None, fill: tuple[int, int, int] = WHITE
) -> Image.Image:
    """Paste equally sized frames into one serpentine grid image (empty cells get `fill`)."""
    if not frames:
        raise ValueError("frames_to_grid needs at least one frame.")
    w, h = frames[0].size
    if any(f.size != (w, h) for f in frames):
        raise ValueError(f"All frames must have the same size; got {sorted({f.size for f in frames})}.")
    layout = _layout(len(frames), rows, cols)
    grid = Image.new("RGB", (layout.cols * w, layout.rows * h), fill)
    for frame, (r, c) in zip(frames, layout.cells):
        grid.paste(frame.convert("RGB"), (c * w, r * h))
    return grid


def grid_to_frames(
    grid: Image.Image, num_frames: int, rows: int | None = None, cols: int | None = None
) -> list[Image.Image]:
    """Cut a serpentine grid image back into its frames, in process order."""
    layout = _layout(num_frames, rows, cols)
    if grid.width % layout.cols or grid.height % layout.rows:
        raise ValueError(
            f"A {grid.width}x{grid.height} grid does not split into {layout.rows}x{layout.cols} equal cells."
        )
    w, h = grid.width // layout.cols, grid.height // layout.rows
    return [grid.crop((c * w, r * h, (c + 1) * w, (r + 1) * h)) for r, c in layout.cells]


# ----------------------------------------------------------------------------------------------
# Tensors: frames (N, C, h, w) <-> grid (C, R*h, C*w)
# ----------------------------------------------------------------------------------------------


def frames_to_grid_tensor(frames: torch.Tensor, layout: GridLayout, fill: float = 1.0) -> torch.Tensor:
    """Frames ``(N, C, h, w)`` -> grid ``(C, rows*h, cols*w)``; empty cells get `fill`."""
    n, ch, h, w = frames.shape
    if n != layout.num_frames:
        raise ValueError(f"Got {n} frames for a layout of {layout.num_frames}.")
    grid = frames.new_full((ch, layout.rows * h, layout.cols * w), fill)
    for frame, (r, c) in zip(frames, layout.cells):
        grid[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    return grid


def grid_tensor_to_frames(grid: torch.Tensor, layout: GridLayout) -> torch.Tensor:
    """Grid ``(C, H, W)`` -> frames ``(N, C, H/rows, W/cols)`` in process order."""
    ch, gh, gw = grid.shape
    h, w = gh // layout.rows, gw // layout.cols
    return torch.stack([grid[:, r * h : (r + 1) * h, c * w : (c + 1) * w] for r, c in layout.cells])


# ----------------------------------------------------------------------------------------------
# Packed latent tokens (Flux packs 2x2 latent patches into one token, row-major over the grid)
# ----------------------------------------------------------------------------------------------


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """Latents ``(B, C, H, W)`` -> tokens ``(B, H/2 * W/2, 4C)``, the same packing as diffusers' FluxPipeline."""
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"Latent height and width must be even to pack 2x2 patches, got {h}x{w}.")
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tokens ``(B, H/2 * W/2, 4C)`` -> latents ``(B, C, H, W)`` (`height`, `width` in latent pixels)."""
    b, n, d = tokens.shape
    if n != (height // 2) * (width // 2):
        raise ValueError(f"{n} tokens do not tile a {height}x{width} latent in 2x2 patches.")
    x = tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def frame_token_indices(layout: GridLayout, frame_tokens: int) -> torch.Tensor:
    """Indices into the packed token sequence of each frame's cell.

    Args:
        layout: the grid layout.
        frame_tokens: tokens per frame side (frame pixels / (vae scale * 2)).

    Returns:
        `torch.LongTensor` of shape `(num_frames, frame_tokens**2)`, row-major inside each cell.
    """
    width = layout.cols * frame_tokens
    local = torch.arange(frame_tokens)
    out = []
    for r, c in layout.cells:
        rows = r * frame_tokens + local
        cols = c * frame_tokens + local
        out.append((rows[:, None] * width + cols[None, :]).reshape(-1))
    return torch.stack(out)


def grid_position_ids(layout: GridLayout, frame_tokens: int) -> torch.Tensor:
    """Position ids ``(rows*t * cols*t, 3)`` = ``[0, row, col]`` of every token of the grid.

    Identical to diffusers' ``FluxPipeline._prepare_latent_image_ids`` for the same token grid, so a
    serpentine grid is a plain Flux image to the transformer.
    """
    h, w = layout.rows * frame_tokens, layout.cols * frame_tokens
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h, dtype=ids.dtype)[:, None]
    ids[..., 2] = torch.arange(w, dtype=ids.dtype)[None, :]
    return ids.reshape(h * w, 3)


def adjacent(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two grid cells share an edge."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
