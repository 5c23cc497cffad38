"""``procseq train frame-by-frame``: the frame-by-frame LoRA and Loom's step embedding, on a frozen base.

Each batch trains one frame ``t`` of every sequence (drawn from ``(seed, step)``, as every random draw of
:class:`procseq.training.trainer.Trainer`), exactly as the frame-by-frame mode generates it
(:mod:`procseq.layouts.frame_by_frame`): its own tokens at the last cell of an ``h + 1`` grid, the text
"title + step caption", the step embedding at its progress, and its history as clean known frames in the
t = 0 condition pass (each with its own step embedding). The history is Loom's sparse sampling with ``K``
drawn from ``k_choices`` and the **rotation offset** drawn in ``0..t-1``
(:func:`procseq.conditioning.history.history_indices`), so every earlier position is seen; with probability
``history_dropout`` there is none, with ``caption_dropout`` the step caption is left out. The LoRA is on in both
passes; the loss is flow matching on frame ``t``'s tokens. The per-frame latents are the known-frames
trainer's cache (each frame encoded alone), shared through :func:`~procseq.training.known_frames.cache_frame_latents`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from procseq.attention.rope import known_position_ids
from procseq.conditioning.frames import KnownFrames
from procseq.conditioning.history import (
    EMBEDDING_FILE,
    StepEmbedding,
    added_to_input,
    history_indices,
    rotation_offset,
    save_step_embedding,
)
from procseq.conditioning.lora import add_condition_lora, lora_parameters, save_condition_lora
from procseq.conditioning.text import encode_steps
from procseq.layout import pack_latents
from procseq.layouts.frame_by_frame import ADAPTER_NAME, META_FILE, frame_layout, pad_captions
from procseq.training.config import FrameByFrameConfig, RunConfig
from procseq.training.flow_matching import flow_matching_loss, sample_timesteps
from procseq.training.known_frames import cache_frame_latents, cache_key, group_rows
from procseq.training.trainer import FlowBatch, Trainer, TrainResult


class FrameDataset(Dataset):
    """Sequences as their frames encoded alone: ``frame_latents`` ``(n, C, h, w)``, ``prompt``, ``captions``,
    ``domain``, ``num_frames`` (no images are read)."""

    def __init__(self, rows: list[dict[str, Any]], frame_latents: dict[int, torch.Tensor]):
        self.rows, self.frame_latents = rows, frame_latents
        self.index = group_rows([int(r["num_frames"]) for r in rows])
        self.num_frames_list = [int(r["num_frames"]) for r in rows]
        self.domains = [r["domain"] for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.rows[i]
        n = int(r["num_frames"])
        return {"frame_latents": self.frame_latents[n][self.index[i]], "prompt": r["prompt"],
                "captions": list(r["captions"]), "domain": r["domain"], "num_frames": n}


@dataclass
class FrameBatch(FlowBatch):
    """A :class:`FlowBatch` of one frame per sequence (``x0`` its tokens), plus what conditions it."""

    step: int
    num_frames: int
    history: tuple[int, ...]
    history_latents: torch.Tensor | None  # (B, h, C, h_lat, w_lat)


class FrameByFrameTrainer(Trainer):
    """Flow matching of the frame-by-frame LoRA and the step embedding (see the module docstring)."""

    def __init__(self, config: RunConfig, pipe: Any, dataset: Any, save_fn: Any, embedding: StepEmbedding) -> None:
        super().__init__(config, pipe, dataset, save_fn)
        self.fc: FrameByFrameConfig = config.frame_by_frame
        self.embedding = embedding
        self._branch_pooled: torch.Tensor | None = None

    def trainable_modules(self) -> list[torch.nn.Module]:
        """The transformer (its LoRA layers) and the step embedding."""
        return [self.pipe.transformer, self.embedding]

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """The LoRA's parameters and the step-embedding table; the base weights stay frozen."""
        modules[1].table.requires_grad_(True)
        return lora_parameters(modules[0], ADAPTER_NAME) + [modules[1].table]

    def branch_pooled(self) -> torch.Tensor:
        """The pooled vector of the empty prompt ``(1, P)`` for the condition pass (which never sees text)."""
        if self._branch_pooled is None:
            self._branch_pooled = self.encode_text([""])[1]
        return self._branch_pooled

    def make_batch(self, step: int, indices: list[int]) -> FrameBatch:
        """One frame per sequence: ``t``, ``K``, the rotation offset, noise, timesteps and dropouts drawn from
        ``(seed, step)`` for the global batch (this process keeps its rows)."""
        t_cfg, fc = self.cfg.train, self.fc
        g = torch.Generator().manual_seed(t_cfg.seed * 1_000_003 + step)
        items = [self.dataset[i] for i in indices]
        n = int(items[0]["num_frames"])
        t = int(torch.randint(n, (1,), generator=g))
        k = int(fc.k_choices[int(torch.randint(len(fc.k_choices), (1,), generator=g))])
        if float(torch.rand(1, generator=g)) < fc.history_dropout:
            k = 0
        history = history_indices(t, k, rotation_offset(t, g))
        with_caption = float(torch.rand(1, generator=g)) >= fc.caption_dropout
        n_global = len(items) * self.accelerator.num_processes
        drop = self.rank_rows(torch.rand(n_global, generator=g)) < self.cfg.data.caption_dropout
        device = self.accelerator.device
        lat = torch.stack([it["frame_latents"] for it in items]).to(device)  # (B, n, C, h, w)
        x0 = pack_latents(lat[:, t])
        noise = self.rank_rows(torch.randn((n_global, *x0.shape[1:]), generator=g)).to(x0)
        times = self.rank_rows(sample_timesteps(n_global, t_cfg.timestep_scheme, g, t_cfg.timestep_mean,
                                                t_cfg.timestep_std, t_cfg.timestep_shift)).to(x0)
        embeds, pooled, txt_ids = self.encode_text(["" if d else it["prompt"] for it, d in zip(items, drop.tolist())])
        if with_caption:
            steps = encode_steps(self.pipe, [it["captions"][t] for it in items], self.pipe.tokenizer_2.model_max_length)
            caption = pad_captions([steps.embeds[0, a:b] for a, b in steps.spans]).to(embeds)
            embeds = torch.cat([embeds, caption], dim=1)
            txt_ids = txt_ids.new_zeros(embeds.shape[1], 3)
        layout = frame_layout(len(history))
        img_ids = known_position_ids(layout, round(x0.shape[1] ** 0.5), [len(history)]).to(x0)
        guidance = None
        if self.accelerator.unwrap_model(self.pipe.transformer).config.guidance_embeds:
            guidance = torch.full((len(items),), t_cfg.guidance, device=device)
        return FrameBatch(items=items, x0=x0, noise=noise, t=times, img_ids=img_ids, layout=layout,
                          prompt_embeds=embeds, pooled=pooled, txt_ids=txt_ids, guidance=guidance, generator=g,
                          step=t, num_frames=n, history=history,
                          history_latents=lat[:, list(history)] if history else None)

    def predict(self, batch: FlowBatch, hidden_states: torch.Tensor | None = None,
                joint_attention_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """Velocity of frame ``t``: history K/V from the condition pass, the step embedding on every frame."""
        assert isinstance(batch, FrameBatch)
        model = self.accelerator.unwrap_model(self.pipe.transformer)
        tokens = batch.x0.shape[1]
        attention = dict(joint_attention_kwargs or {})
        if batch.history_latents is not None:
            cells = KnownFrames(tuple(range(len(batch.history))), batch.history_latents)
            with self.accelerator.autocast(), added_to_input(
                    model, self.embedding.for_frames(batch.history, batch.num_frames, tokens)):
                kv = cells.condition(model, batch.layout, self.branch_pooled().to(batch.x0), batch.guidance,
                                     lora=False)  # known_frames off; this LoRA is on in both passes
            attention.update(kv.attention_kwargs("use"))
        with added_to_input(model, self.embedding.for_frames([batch.step], batch.num_frames, tokens)):
            return super().predict(batch, hidden_states, attention or None)

    def compute_loss(self, batch: FlowBatch) -> torch.Tensor:
        """Flow matching on frame ``t``'s tokens."""
        return flow_matching_loss(self.predict(batch), batch.x0, batch.noise)


def weights_meta(fc: FrameByFrameConfig) -> dict[str, Any]:
    """What ``frame_by_frame.json`` records beside the weights."""
    return {"rank": fc.rank, "alpha": fc.alpha, "targets": list(fc.targets), "k": fc.k, "k_choices": list(fc.k_choices),
            "history_dropout": fc.history_dropout, "caption_dropout": fc.caption_dropout,
            "num_positions": fc.num_positions, "rotation_offset": True}


def save_weights(transformer: Any, embedding: StepEmbedding, out: Path, fc: FrameByFrameConfig) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (peft names), ``step_embedding.safetensors`` and
    ``frame_by_frame.json`` into `out` (the folder :func:`procseq.layouts.frame_by_frame.load_weights` reads)."""
    save_condition_lora(transformer, out, weights_meta(fc), adapter_name=ADAPTER_NAME, meta_name=META_FILE)
    save_step_embedding(embedding, Path(out) / EMBEDDING_FILE)
    return Path(out)


def run_frame_by_frame_training(cfg: RunConfig, progress: bool = True) -> TrainResult:
    """Train the frame-by-frame LoRA and step embedding of ``cfg.frame_by_frame`` over the frozen ``cfg.model.path``."""
    from procseq.training.run import build_pipeline, open_corpus, require_base_model, write_training_record

    require_base_model(cfg, "Frame-by-frame training")
    grids = open_corpus(cfg)
    fc = cfg.frame_by_frame
    if fc.sequences_per_domain is not None:
        taken: dict[str, int] = {}
        grids.rows = [r for r in grids.rows
                      if taken.setdefault(r["domain"], 0) < fc.sequences_per_domain
                      and not taken.update({r["domain"]: taken[r["domain"]] + 1})]
    pipe, _ = build_pipeline(cfg)
    frames = cache_frame_latents(pipe.vae, grids, Path(fc.cache_dir) / cache_key(grids, pipe.vae) / "frames.safetensors",
                                 progress=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        add_condition_lora(pipe.transformer, fc.rank, fc.alpha, fc.targets, adapter_name=ADAPTER_NAME)
    embedding = StepEmbedding(pipe.transformer.config.in_channels, fc.num_positions)

    def save(p: Any, out: Path) -> None:
        save_weights(p.transformer, embedding, out, fc)

    result = FrameByFrameTrainer(cfg, pipe, FrameDataset(grids.rows, frames), save, embedding).train(progress=progress)
    write_training_record(Path(cfg.train.output_dir), result.model_dir)
    (result.model_dir / "training" / "corpus.json").write_text(json.dumps(
        {"dir": str(cfg.data.dir), "split": cfg.data.split, "sequences": len(grids),
         "frames": sorted(set(grids.num_frames_list))}, indent=2) + "\n")
    return result


__all__ = ["FrameBatch", "FrameByFrameTrainer", "FrameDataset", "run_frame_by_frame_training", "save_weights",
           "weights_meta"]

