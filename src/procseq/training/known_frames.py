"""``procseq train known-frames``: the condition LoRA, trained on random known subsets.

One LoRA serves every use of known frames (DESIGN.md #10): each batch draws which cells are known,
from a mix of the last cell (ReCraft), the first k (continuation), the two neighbours of a missing
cell (interpolation) and random sparse sets; a share of the sequences also gives a 3-frame cut, so
interpolation is seen in short sequences too. Known frames are encoded **alone** by the VAE (as a
user's pictures are); the loss covers the unknown cells only (:meth:`KnownFrames.loss_mask`).

Half of the sequences are captioned with their prompt, half with the domain phrase alone (ReCraft's
text), so the LoRA works with and without a description. The base model is frozen.

Caches (grid latents, 3-frame cuts, per-frame latents) are keyed by a hash of what they were computed
from (the corpus records, the domains, the VAE weights), so another corpus or model never reuses them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from procseq.attention.processors import adapters_enabled
from procseq.conditioning.frames import KnownFrames
from procseq.conditioning.lora import ADAPTER_NAME, add_condition_lora, lora_parameters, save_condition_lora
from procseq.data.synthetic.base import stable_hash
from procseq.distributed import process_state
from procseq.layout import GridLayout, frames_to_grid_tensor, grid_tensor_to_frames
from procseq.models.codec import encode_pixels
from procseq.domain_prompt import domain_prompt, domain_prompts
from procseq.training.config import KnownFramesConfig, RunConfig
from procseq.training.flow_matching import flow_matching_loss
from procseq.training.latents import LatentDataset, cache_latents
from procseq.training.trainer import FlowBatch, Trainer, TrainResult

CUT = 3


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


class CutDataset(Dataset):
    """3-frame windows of a grid dataset as 3-frame grids (start drawn once per sequence from its index)."""

    def __init__(self, grids: Any, indices: list[int]):
        self.grids, self.indices = grids, indices
        self.starts = [stable_hash("cut", i) % (grids.num_frames_list[i] - CUT + 1) for i in indices]
        self.num_frames_list = [CUT] * len(indices)
        self.domains = [grids.domains[i] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> dict[str, Any]:
        item = self.grids[self.indices[j]]
        frames = grid_tensor_to_frames(item["grid"], GridLayout.for_frames(item["num_frames"]))
        cut = frames[self.starts[j]: self.starts[j] + CUT]
        return {**item, "grid": frames_to_grid_tensor(cut, GridLayout.for_frames(CUT)), "num_frames": CUT}


@torch.no_grad()
def cache_frame_latents(vae: Any, grids: Any, path: Path, batch_size: int = 64,
                        progress: bool = True) -> dict[int, torch.Tensor]:
    """Every frame of every grid encoded alone: per frame count ``n``, ``(sequences, n, C, h, w)`` in the
    row order of :func:`procseq.training.latents.cache_latents`; reused if `path` exists."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return {int(k.split("_")[1]): v for k, v in load_file(str(path)).items()}
    by_frames: dict[int, list[int]] = {}
    for i, n in enumerate(grids.num_frames_list):
        by_frames.setdefault(int(n), []).append(i)
    rows = getattr(grids, "rows", None)
    out: dict[int, torch.Tensor] = {}
    bar = tqdm(total=len(grids), desc="cache frame latents", disable=not progress)
    for n, indices in sorted(by_frames.items()):
        # rows that share a grid (its other phrasings) share its latents: each grid is encoded once
        keys = [rows[i].get("grid_path", i) if rows is not None else i for i in indices]
        first = {k: j for j, k in reversed(list(enumerate(keys)))}
        unique = sorted(first.values())
        layout, chunks = GridLayout.for_frames(n), []
        for start in range(0, len(unique), batch_size):
            frames = torch.stack([grid_tensor_to_frames(grids[indices[j]]["grid"], layout)
                                  for j in unique[start: start + batch_size]])
            z = encode_pixels(vae, frames.flatten(0, 1).to(vae.device))
            chunks.append(z.unflatten(0, (len(frames), n)).cpu())
            bar.update(len(frames))
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


class KnownFramesDataset(Dataset):
    """Grid latents plus each grid's frames encoded alone (``frame_latents`` ``(n, C, h, w)``); full
    sequences first, then the 3-frame cuts. The prompt is the sequence's or its domain phrase."""

    def __init__(self, full: LatentDataset, full_frames: dict[int, torch.Tensor], cuts: LatentDataset | None = None,
                 cut_frames: torch.Tensor | None = None, domain_prefix: bool = False,
                 step_count_prefix: bool = False):
        self.full, self.full_frames, self.cuts, self.cut_frames = full, full_frames, cuts, cut_frames
        self.domain_prefix = domain_prefix  # the base reads "<domain phrase> process: ..." (procseq.domain_prompt)
        self.step_count_prefix = step_count_prefix  # ... "process in <n> steps: ..."
        parts = [full] + ([cuts] if cuts is not None else [])
        self.num_frames_list = [n for p in parts for n in p.num_frames_list]
        self.domains = [d for p in parts for d in p.domains]

    def __len__(self) -> int:
        return len(self.num_frames_list)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < len(self.full):
            item, r = dict(self.full[i]), self.full.records[i]
            item["frame_latents"] = self.full_frames[r["num_frames"]][r["row"]]
        else:
            j = i - len(self.full)
            assert self.cuts is not None and self.cut_frames is not None
            item = dict(self.cuts[j])
            item["frame_latents"] = self.cut_frames[self.cuts.records[j]["row"]]
        if stable_hash("prompt", i) % 2:  # the text ReCraft's pipeline sends when the user gives no prompt
            count = int(item["num_frames"]) if self.step_count_prefix else None
            item["prompt"] = domain_prompts([domain_prompt(item["domain"])], item["domain"], self.domain_prefix, count)[0]
        return item


@dataclass
class KnownBatch(FlowBatch):
    """A :class:`FlowBatch` plus the known frames of the batch (one known set for all its items)."""

    known: KnownFrames


class KnownFramesTrainer(Trainer):
    """Flow matching of the condition LoRA only, on random known subsets (see the module docstring)."""

    def __init__(self, config: RunConfig, pipe: Any, dataset: Any, save_fn: Any) -> None:
        super().__init__(config, pipe, dataset, save_fn)
        self.kf: KnownFramesConfig = config.known_frames
        self._branch_pooled: torch.Tensor | None = None

    @property
    def unused_parameters(self) -> str | None:
        """``concat``: only each layer's K/V leave the condition pass, so the LoRA of the last block's query,
        MLP and output projection and of the final ``proj_out`` never reach the loss (no gradient)."""
        kf = self.cfg.known_frames
        return "LoRA layers after the condition pass's last K/V" if kf.mode == "concat" and not kf.main_lora else None

    def trainable_modules(self) -> list[torch.nn.Module]:
        """Only the transformer (its LoRA layers) is optimised."""
        return [self.pipe.transformer]

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """The condition LoRA's parameters; the base weights stay frozen."""
        return lora_parameters(modules[0], ADAPTER_NAME)

    def branch_pooled(self) -> torch.Tensor:
        """The pooled vector of the empty prompt ``(1, P)``: the condition pass never sees the text."""
        if self._branch_pooled is None:
            with torch.no_grad():
                self._branch_pooled = self.pipe.encode_prompt(
                    [""], None, device=self.accelerator.device,
                    max_sequence_length=self.pipe.tokenizer_2.model_max_length)[1]
        return self._branch_pooled

    def make_batch(self, step: int, indices: list[int]) -> KnownBatch:
        """The base batch plus a known set drawn from (seed, step) and its clean per-frame latents."""
        base = super().make_batch(step, indices)
        n = base.layout.num_frames
        weights = dict(self.kf.subsets)
        if n == CUT:  # the 3-frame cuts are there for interpolation: mostly the two ends known
            total = sum(weights.values())
            weights = {k: 0.3 * v / total for k, v in weights.items()}
            weights["neighbours"] = weights.get("neighbours", 0.0) + 0.7
        known = draw_known(n, weights, base.generator)
        lat = torch.stack([it["frame_latents"][list(known)] for it in base.items]).to(base.x0)
        return KnownBatch(**{f.name: getattr(base, f.name) for f in fields(FlowBatch)},
                          known=KnownFrames(known, lat))

    def predict(self, batch: FlowBatch, hidden_states: torch.Tensor | None = None,
                joint_attention_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """Velocity of the main pass, the known frames conditioning it as ``known_frames.mode`` says."""
        assert isinstance(batch, KnownBatch)
        x = batch.x_t if hidden_states is None else hidden_states
        if self.kf.mode == "inplace":
            return super().predict(batch, batch.known.overwrite(x, batch.layout), joint_attention_kwargs)
        model = self.accelerator.unwrap_model(self.pipe.transformer)
        with self.accelerator.autocast():
            kv = batch.known.condition(model, batch.layout, self.branch_pooled().to(batch.x0), batch.guidance)
        with adapters_enabled(model, self.kf.main_lora, names=(ADAPTER_NAME,)):
            return super().predict(batch, x, {**(joint_attention_kwargs or {}), **kv.attention_kwargs("use")})

    def compute_loss(self, batch: FlowBatch) -> torch.Tensor:
        """Flow matching on the unknown cells' tokens only."""
        assert isinstance(batch, KnownBatch)
        mask = batch.known.loss_mask(batch.layout).to(batch.x0.device)
        return flow_matching_loss(self.predict(batch), batch.x0, batch.noise, mask)


def lora_meta(cfg: KnownFramesConfig) -> dict[str, Any]:
    """What ``known_frames.json`` records beside the weights."""
    return {"mode": cfg.mode, "rank": cfg.rank, "alpha": cfg.alpha, "targets": list(cfg.targets),
            "subsets": dict(cfg.subsets), "cut_fraction": cfg.cut_fraction, "main_lora": cfg.main_lora}


def add_seeded_condition_lora(transformer: Any, cfg: KnownFramesConfig, seed: int) -> None:
    """:func:`add_condition_lora` under a fixed seed, so a run (and its resume) is reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        add_condition_lora(transformer, cfg.rank, cfg.alpha, cfg.targets)


def run_known_frames_training(cfg: RunConfig, progress: bool = True) -> TrainResult:
    """Train the condition LoRA of ``cfg.known_frames`` on ``cfg.data`` over the frozen ``cfg.model.path``."""
    from procseq.training.run import (build_pipeline, open_corpus, prefix_flag,
                                      require_base_model, write_training_record)

    require_base_model(cfg, "The condition LoRA")
    grids = open_corpus(cfg)
    pipe, _ = build_pipeline(cfg)
    kf = cfg.known_frames
    key = cache_key(grids, pipe.vae)
    cache = Path(kf.cache_dir) / key
    cut_ids = [i for i in range(len(grids)) if stable_hash("cut-pick", i) % 10_000 < kf.cut_fraction * 10_000]
    cuts = cut_frames = None
    cut_data = CutDataset(grids, cut_ids) if cut_ids else None
    with process_state().main_process_first():  # many processes: the first writes the caches
        full = cache_latents(pipe.vae, grids, cache / "grids.safetensors", progress=progress)
        full_frames = cache_frame_latents(pipe.vae, grids, cache / "frames.safetensors", progress=progress)
        if cut_data is not None:
            tag = hashlib.sha256(repr(cut_ids).encode()).hexdigest()[:8]
            cuts = cache_latents(pipe.vae, cut_data, cache / f"cuts-{tag}.safetensors", progress=progress)
    if cut_data is not None:
        rows = group_rows(grids.num_frames_list)
        cut_frames = torch.stack([full_frames[grids.num_frames_list[i]][rows[i]][s: s + CUT]
                                  for i, s in zip(cut_ids, cut_data.starts)])
    add_seeded_condition_lora(pipe.transformer, kf, cfg.train.seed)

    def save(p: Any, out: Path) -> None:
        save_condition_lora(p.transformer, out, lora_meta(kf))

    result = KnownFramesTrainer(cfg, pipe, KnownFramesDataset(full, full_frames, cuts, cut_frames, prefix_flag(cfg),
                                                                  prefix_flag(cfg, "step_count_prefix")), save) \
        .train(progress=progress)
    write_training_record(Path(cfg.train.output_dir), result.model_dir)
    return result


def group_rows(num_frames: list[int]) -> list[int]:
    """Row of every sequence in its frame-count group (the order :func:`cache_latents` writes)."""
    seen: dict[int, int] = {}
    rows = []
    for n in num_frames:
        rows.append(seen.get(n, 0))
        seen[n] = rows[-1] + 1
    return rows


__all__ = ["CutDataset", "KnownBatch", "KnownFramesDataset", "KnownFramesTrainer", "add_seeded_condition_lora",
           "cache_frame_latents", "cache_key", "draw_known", "group_rows", "lora_meta", "run_known_frames_training"]
