"""The per-frame latent cache encodes each grid once, however many phrasings (rows) share it."""

from __future__ import annotations

import torch

from procseq.training.frame_data import cache_frame_latents


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
