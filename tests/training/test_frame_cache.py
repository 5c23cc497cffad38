"""The latent caches of the layouts trainer encode each grid once, however many phrasings (rows) share it: its frames
alone (regional, frame by frame) and the whole grid as one image (the grid, which decodes as one image)."""

from __future__ import annotations

import torch

from procseq.models.codec import encode_pixels
from procseq.training.frame_data import cache_frame_latents, cache_grid_latents


class Grids:
    """Two grids of 4 frames (16 px), each stored under two phrasings; counts the reads."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = {p: torch.rand(3, 32, 32, generator=g) * 2 - 1 for p in ("a.png", "b.png")}
        self.rows = [{"grid_path": p, "num_frames": 4} for p in ("a.png", "b.png", "a.png", "b.png")]
        self.num_frames_list = [4] * 4
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        self.reads.append(i)
        return {"grid": self.images[self.rows[i]["grid_path"]], "num_frames": 4}


def test_rows_sharing_a_grid_share_one_encoding(tiny_pipe, tmp_path) -> None:
    grids = Grids()
    out = cache_frame_latents(tiny_pipe.vae, grids, tmp_path / "frames.safetensors", progress=False)[4]
    assert out.shape[:2] == (4, 4) and sorted(grids.reads) == [0, 1]  # two grids read, not four rows
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[3]) and not torch.equal(out[0], out[1])
    again = cache_frame_latents(tiny_pipe.vae, grids, tmp_path / "frames.safetensors", progress=False)[4]
    assert torch.equal(again, out)  # read back from the file


def test_the_grid_cache_is_each_grid_encoded_as_one_image(tiny_pipe, tmp_path) -> None:
    grids = Grids()
    out = cache_grid_latents(tiny_pipe.vae, grids, tmp_path / "grids.safetensors", progress=False)[4]
    assert sorted(grids.reads) == [0, 1]
    with torch.no_grad():
        expected = encode_pixels(tiny_pipe.vae, torch.stack([grids.images["a.png"], grids.images["b.png"]]))
    assert torch.allclose(out, expected[[0, 1, 0, 1]], atol=1e-6)
    frames = cache_frame_latents(tiny_pipe.vae, grids, tmp_path / "frames.safetensors", progress=False)[4]
    top_left = out[0, :, : frames.shape[-2], : frames.shape[-1]]
    assert not torch.allclose(top_left, frames[0, 0], atol=1e-4)  # the VAE sees across cells: not the frame alone
