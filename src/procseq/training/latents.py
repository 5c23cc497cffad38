"""Stage 2 of procseq-tiny: encode every training grid once and train the transformer on the cache.

The cache is one safetensors file (one tensor per grid size) plus a JSON sidecar with the prompts,
so it is never pickle and can be inspected with any safetensors reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from procseq.outputs import atomic_file, write_text_atomic
from tqdm.auto import tqdm

from procseq.models.codec import encode_pixels


class LatentDataset(Dataset):
    """Cached scaled VAE latents ``(C, h, w)`` of grids, with prompt, num_frames and domain per item."""

    def __init__(self, latents: dict[int, torch.Tensor], records: list[dict[str, Any]]):
        self.latents, self.records = latents, records
        self.num_frames_list = [r["num_frames"] for r in records]
        self.domains = [r["domain"] for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        return {"latents": self.latents[r["num_frames"]][r["row"]], "prompt": r["prompt"],
                "num_frames": r["num_frames"], "domain": r["domain"]}

    def save(self, path: Path) -> None:
        """Write ``path`` (safetensors) and ``path.with_suffix('.json')``."""
        path.with_suffix(".json").unlink(missing_ok=True)  # the sidecar last: a cache without it is never reused
        with atomic_file(path) as tmp:
            save_file({f"frames_{n}": t.contiguous() for n, t in self.latents.items()}, str(tmp))
        write_text_atomic(path.with_suffix(".json"), json.dumps(self.records))

    @classmethod
    def load(cls, path: Path) -> "LatentDataset":
        """Read a cache written by :meth:`save`."""
        tensors = load_file(str(path))
        records = json.loads(path.with_suffix(".json").read_text())
        return cls({int(k.split("_")[1]): v for k, v in tensors.items()}, records)


@torch.no_grad()
def cache_latents(vae: Any, dataset: Dataset, path: Path, batch_size: int = 64, progress: bool = True) -> LatentDataset:
    """Encode every grid of `dataset` (items with ``grid``, ``prompt``, ``num_frames``, ``domain``)
    to ``(mode - shift) * scale`` latents and save them at `path`; reuses an existing cache of the same size,
    with its prompts taken afresh from ``dataset.prompts`` when the dataset has them (the pixels are the
    same; the words, e.g. a domain or step-count prefix switched on later, may not be)."""
    path = Path(path)
    by_frames: dict[int, list[int]] = {}
    for i, n in enumerate(dataset.num_frames_list):
        by_frames.setdefault(int(n), []).append(i)
    if path.is_file() and path.with_suffix(".json").is_file():
        cached = LatentDataset.load(path)
        if len(cached) == len(dataset):
            prompts = getattr(dataset, "prompts", None)
            if prompts is not None:  # records are in the order they were encoded: by frame count, then index
                order = [i for _, indices in sorted(by_frames.items()) for i in indices]
                for record, i in zip(cached.records, order):
                    record["prompt"] = prompts[i]
            return cached
    latents: dict[int, torch.Tensor] = {}
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(dataset), desc="cache latents", disable=not progress)
    for n, indices in sorted(by_frames.items()):
        chunks = []
        for start in range(0, len(indices), batch_size):
            items = [dataset[i] for i in indices[start : start + batch_size]]
            chunks.append(encode_pixels(vae, torch.stack([it["grid"] for it in items]).to(vae.device)).cpu())
            for it in items:
                records.append({"row": len(records) - sum(len(v) for v in latents.values()), "num_frames": n,
                                "prompt": it["prompt"], "domain": it["domain"]})
            bar.update(len(items))
        latents[n] = torch.cat(chunks)
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = LatentDataset(latents, records)
    out.save(path)
    return out
