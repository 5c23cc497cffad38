"""The regional LoRA (CookAnything's trained mode): the frozen base taught the regional layout.

The base model learnt serpentine grids driven by a prompt; the regional mode shows it frames one after
another, each driven by its own step caption, with the step-wise mask and flexible ids
(:mod:`procseq.layouts.regional`). This trainer fits one peft LoRA (adapter ``"regional"``, diffusers naming)
to exactly that input: every frame of a corpus sequence encoded alone by the VAE
(:func:`procseq.training.known_frames.cache_frame_latents`), laid out as regions, the plan text (the prompt)
followed by the fused step captions, the regional mask blended with the global pass as at inference. The
loop, resume and logging are :class:`procseq.training.trainer.Trainer`'s; caption dropout drops the prompt
and the step captions together (the empty prompt is the negative CFG branch, as at inference).

The LoRA is only active inside a regional generation (:func:`procseq.layouts.regional.regional_lora_active`):
grid mode and the known-frames LoRA never see it.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from procseq.data.dataset import GridDataset

from procseq.attention.masks import RegionLayout, RegionMask
from procseq.attention.processors import install_processors
from procseq.attention.rope import region_layout
from procseq.conditioning.lora import add_condition_lora, lora_parameters, save_condition_lora
from procseq.conditioning.text import encode_steps, join_text
from procseq.training.config import RegionalTrainConfig, RunConfig
from procseq.training.flow_matching import flow_matching_loss
from procseq.training.trainer import FlowBatch, Trainer, TrainResult

from procseq.layouts.regional import ADAPTER, META_FILE


class RegionalDataset(GridDataset):
    """Sequences as regional latents: item ``latents`` ``(C, n * h, w)`` (its frames, each encoded alone, stacked
    top to bottom: packed, the regions one after another), ``prompt``, ``captions``, ``domain``, ``num_frames``."""

    def __init__(self, rows: list[dict[str, Any]], frame_latents: dict[int, torch.Tensor]):
        from procseq.training.known_frames import group_rows

        self.rows, self.frame_latents = rows, frame_latents
        self.group_row = group_rows(self.num_frames_list)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.rows[i]
        frames = self.frame_latents[int(r["num_frames"])][self.group_row[i]]  # (n, C, h, w)
        n, c, h, w = frames.shape
        return {"latents": frames.permute(1, 0, 2, 3).reshape(c, n * h, w), "prompt": r["prompt"],
                "captions": list(r["captions"]), "domain": r["domain"], "num_frames": n}


class RegionalTrainer(Trainer):
    """Flow matching of the regional LoRA only (see the module docstring)."""

    def __init__(self, config: RunConfig, pipe: Any, dataset: Any, save_fn: Any, regional: RegionalTrainConfig):
        super().__init__(config, pipe, dataset, save_fn)
        self.rc = regional

    def trainable_modules(self) -> list[torch.nn.Module]:
        """Only the transformer (its regional LoRA) is optimised."""
        return [self.pipe.transformer]

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """The regional LoRA's parameters; the base weights stay frozen."""
        return lora_parameters(modules[0], ADAPTER)

    def make_batch(self, step: int, indices: list[int]) -> FlowBatch:
        """The base batch (noise, t and caption dropout from (seed, step)) with the regional layout's ids."""
        from procseq.layouts.regional import regional_ids

        base = super().make_batch(step, indices)
        n = int(base.items[0]["num_frames"])
        frame_tokens = int(round((base.x0.shape[1] // n) ** 0.5))
        ids = regional_ids(n, frame_tokens, self.rc.ids).to(base.x0)  # type: ignore[arg-type]
        return replace(base, img_ids=ids, layout=region_layout(n))

    def dropped(self, batch: FlowBatch) -> list[bool]:
        """Which items had their caption dropped (their prompt encoding is the empty prompt's)."""
        empty = self.encode_text([""])[0].to(batch.prompt_embeds)
        return [bool(torch.equal(batch.prompt_embeds[j], empty[0])) for j in range(len(batch.items))]

    def compute_loss(self, batch: FlowBatch) -> torch.Tensor:
        """Flow matching, one sequence at a time (each has its own step-text length), averaged over the batch."""
        frame_tokens2 = batch.x0.shape[1] // int(batch.items[0]["num_frames"])
        losses = []
        for j, (item, drop) in enumerate(zip(batch.items, self.dropped(batch))):
            steps = encode_steps(self.pipe, item["captions"], self.rc.max_tokens_per_step,
                                 whole=self.rc.fusion > 0).fused(self.rc.fusion)
            embeds, txt_ids, spans = join_text(batch.prompt_embeds[j:j + 1], steps)
            mask = RegionMask(RegionLayout.consecutive(embeds.shape[1], spans, frame_tokens2))
            if drop:  # the negative branch at inference: the empty prompt alone, the frames kept apart
                embeds, txt_ids = batch.prompt_embeds[j:j + 1], batch.txt_ids
            one = replace(batch, x0=batch.x0[j:j + 1], noise=batch.noise[j:j + 1], t=batch.t[j:j + 1],
                          pooled=batch.pooled[j:j + 1], prompt_embeds=embeds, txt_ids=txt_ids,
                          guidance=None if batch.guidance is None else batch.guidance[j:j + 1])
            pred = self.predict(one, None, mask.attention_kwargs(self.rc.blend))
            losses.append(flow_matching_loss(pred, one.x0, one.noise))
        return torch.stack(losses).mean()


def add_regional_lora(transformer: Any, rc: RegionalTrainConfig, seed: int) -> None:
    """The untrained regional LoRA (gaussian A, zero B) under a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        add_condition_lora(transformer, rc.rank, rc.alpha, rc.targets, adapter_name=ADAPTER)


def run_regional_training(cfg: RunConfig, rc: RegionalTrainConfig, progress: bool = True) -> TrainResult:
    """Train the regional LoRA on ``cfg.data`` (the first ``rc.per_domain`` sequences per domain) over the frozen
    ``cfg.model.path``; writes ``OUTPUT_DIR/model`` (weights + ``regional.json``) with its training record."""
    from procseq.data.dataset import GridDataset
    from procseq.eval.runner import per_domain
    from procseq.training.known_frames import cache_frame_latents, cache_key
    from procseq.training.run import build_pipeline, prefix_flag, write_training_record

    if not cfg.model.path:
        raise ValueError("The regional LoRA needs a base model: set model.path (e.g. procseq-tiny).")
    grids = GridDataset(cfg.data.dir, cfg.data.split, domains=cfg.data.domains, domain_prefix=prefix_flag(cfg),
                        step_count_prefix=prefix_flag(cfg, "step_count_prefix"))
    grids.rows = per_domain(grids.rows, rc.per_domain, sorted(set(grids.domains)))
    if not grids.rows:
        raise ValueError(f"No sequences of domains {cfg.data.domains} in {cfg.data.dir}/{cfg.data.split}.")
    pipe, _ = build_pipeline(cfg)
    install_processors(pipe.transformer)
    cache = Path(rc.cache_dir) / cache_key(grids, pipe.vae, "regional") / "frames.safetensors"
    frames = cache_frame_latents(pipe.vae, grids, cache, progress=progress)
    add_regional_lora(pipe.transformer, rc, cfg.train.seed)
    meta = {**asdict(rc), "trained_on": {"data": cfg.data.dir, "split": cfg.data.split, "sequences": len(grids.rows),
                                         "frame_counts": sorted(set(grids.num_frames_list))}}

    def save(p: Any, out: Path) -> None:
        save_condition_lora(p.transformer, out, meta, adapter_name=ADAPTER, meta_name=META_FILE)

    trainer = RegionalTrainer(cfg, pipe, RegionalDataset(grids.rows, frames), save, rc)
    result = trainer.train(progress=progress)
    write_training_record(Path(cfg.train.output_dir), result.model_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m procseq.training.regional --out runs/regional-lora --steps 1000 [--per-domain 300 ...]``."""
    import argparse

    from procseq.training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig

    p = argparse.ArgumentParser(description="Train the regional LoRA over procseq-tiny (resumable).")
    p.add_argument("--out", required=True)
    p.add_argument("--data", default="data_cache/corpus")
    p.add_argument("--model", default="procseq-tiny")
    p.add_argument("--domains", default="painting,line_drawing,lego,pixel_art,cooking,emoji")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--per-domain", type=int, default=300)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = RunConfig(model=ModelConfig(path=args.model),
                    data=DataConfig(dir=args.data, domains=args.domains.split(","), caption_dropout=0.1),
                    optim=OptimConfig(name="adamw", lr=args.lr, weight_decay=0.0, warmup_steps=50),
                    train=TrainConfig(output_dir=args.out, max_steps=args.steps, batch_size=args.batch_size,
                                      checkpoint_every=100, log_every=10, seed=args.seed)).validate()
    rc = RegionalTrainConfig(rank=args.rank, alpha=float(args.rank), per_domain=args.per_domain)
    result = run_regional_training(cfg, rc)
    print(f"trained {result.step} steps in {result.seconds:.0f} s, last loss {result.loss:.4f}: {result.model_dir}")


if __name__ == "__main__":
    main()


__all__ = ["RegionalDataset", "RegionalTrainConfig", "RegionalTrainer", "add_regional_lora", "run_regional_training"]
