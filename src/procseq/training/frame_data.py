"""Corpus sequences as per-frame latents, shared by every layouts run: the cache, its key, the rows' order, and the
known-frame sets a batch draws (DESIGN.md #10)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from procseq.layout import GridLayout, grid_tensor_to_frames
from procseq.models.codec import encode_pixels


def draw_known(num_frames: int, weights: dict[str, float], g: torch.Generator) -> tuple[int, ...]:
    """A known set for a sequence of `num_frames` (>= 3), drawn from the `weights` mix with generator `g`."""
    kinds = [k for k in ("last", "first", "neighbours", "sparse") if weights.get(k, 0) > 0]
    probs = torch.tensor([float(weights[k]) for k in kinds])
    kind = kinds[int(torch.multinomial(probs, 1, generator=g))]
    n = num_frames

    def rand(lo: int, hi: int) -> int:  # inclusive
        return lo + int(torch.randint(hi - lo + 1, (1,), generator=g))

    if kind == "last":
        return (n - 1,)
    if kind == "first":
        return tuple(range(rand(1, n - 2)))
    if kind == "neighbours":
        i = rand(1, n - 2)
        return (i - 1, i + 1)
    size = rand(1, n - 1)
    return tuple(sorted(torch.randperm(n, generator=g)[:size].tolist()))


@torch.no_grad()
def cache_frame_latents(vae: Any, grids: Any, path: Path, batch_size: int = 64,
                        progress: bool = True) -> dict[int, torch.Tensor]:
    """Every frame of every grid encoded alone: per frame count ``n``, ``(sequences, n, C, h, w)`` in the
    row order of :func:`procseq.training.latents.cache_latents`; reused if `path` exists."""

    def encode(batch: list[torch.Tensor], n: int) -> torch.Tensor:
        layout = GridLayout.for_frames(n)
        frames = torch.stack([grid_tensor_to_frames(g, layout) for g in batch])
        return encode_pixels(vae, frames.flatten(0, 1).to(vae.device)).unflatten(0, (len(frames), n))

    return _cache_by_frames(grids, path, encode, batch_size, "cache frame latents", progress)


@torch.no_grad()
def cache_grid_latents(vae: Any, grids: Any, path: Path, batch_size: int = 16,
                       progress: bool = True) -> dict[int, torch.Tensor]:
    """Every grid encoded as one image, as the grid layout decodes it (a frame's own encoding differs from its cell
    of the grid's by 20-50 %: the VAE sees across the cells): per frame count ``n``, ``(sequences, C, H, W)`` in the
    row order of :func:`cache_frame_latents`; reused if `path` exists."""

    def encode(batch: list[torch.Tensor], n: int) -> torch.Tensor:
        return encode_pixels(vae, torch.stack(batch).to(vae.device))

    return _cache_by_frames(grids, path, encode, batch_size, "cache grid latents", progress)


def _cache_by_frames(grids: Any, path: Path, encode: Callable[[list[torch.Tensor], int], torch.Tensor],
                     batch_size: int, desc: str, progress: bool) -> dict[int, torch.Tensor]:
    """``encode(grid tensors, n)`` of every grid, grouped by frame count ``n`` (in the order of :func:`group_rows`),
    each grid encoded once however many rows (phrasings) share it; saved to `path` (safetensors), or read from it."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return {int(k.split("_")[1]): v for k, v in load_file(str(path)).items()}
    by_frames: dict[int, list[int]] = {}
    for i, n in enumerate(grids.num_frames_list):
        by_frames.setdefault(int(n), []).append(i)
    rows = getattr(grids, "rows", None)
    out: dict[int, torch.Tensor] = {}
    bar = tqdm(total=len(grids), desc=desc, disable=not progress)
    for n, indices in sorted(by_frames.items()):
        # rows that share a grid (its other phrasings) share its latents: each grid is encoded once
        keys = [rows[i].get("grid_path", i) if rows is not None else i for i in indices]
        first = {k: j for j, k in reversed(list(enumerate(keys)))}
        unique = sorted(first.values())
        chunks = []
        for start in range(0, len(unique), batch_size):
            batch = [grids[indices[j]]["grid"] for j in unique[start: start + batch_size]]
            chunks.append(encode(batch, n).cpu())
            bar.update(len(batch))
        encoded = torch.cat(chunks)
        position = {j: u for u, j in enumerate(unique)}
        out[n] = encoded[torch.tensor([position[first[k]] for k in keys])]
        bar.update(len(indices) - len(unique))
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({f"frames_{n}": t.contiguous() for n, t in out.items()}, str(tmp))
    tmp.replace(path)
    return out


def cache_key(grids: Any, vae: Any, *extra: Any) -> str:
    """A short hash of what a cache is computed from: the records (paths, prompts), the VAE's weights and
    config, and `extra` (e.g. the kind of cache)."""
    h = hashlib.sha256()
    for r in grids.rows:
        h.update(f"{r['grid_path']}\x1f{r['prompt']}\x1f{r['num_frames']}\n".encode())
    h.update(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for name, p in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def group_rows(num_frames: list[int]) -> list[int]:
    """Row of every sequence in its frame-count group (the order :func:`cache_latents` writes)."""
    seen: dict[int, int] = {}
    rows = []
    for n in num_frames:
        rows.append(seen.get(n, 0))
        seen[n] = rows[-1] + 1
    return rows


__all__ = ["cache_frame_latents", "cache_grid_latents", "cache_key", "draw_known", "group_rows"]
