"""One trainer over the layout objects (DESIGN.md #14, #15): mixed-layout batches, known frames at random cells.

Every training sequence is its frames, each encoded alone by the VAE (:func:`cache_frame_latents`), and, for the grid
(which decodes as one image), the whole grid encoded as one image (:func:`cache_grid_latents`): a frame's own encoding
differs from its cell of the grid's by 20-50 %, and a grid trained on per-frame targets lost 0.1 attribute accuracy
(BENCHMARKS, "Where the grid's loss comes from"). Each step, every
sequence of the global batch is given a layout (drawn with the ``layouts.weights`` shares) and a caption dropout from
its own generator, seeded by ``(seed, step, its place in the global batch)``; the sequences of one layout form a
sub-batch, which draws what it shares (a known-frame set, Loom's frame and history) from a generator seeded by
``(seed, step, layout)``. So a step's inputs do not depend on how the batch is split over processes, and a run
resumes exactly. Each sub-batch is built by its layout's :meth:`~procseq.layouts.base.Layout.training_example` (what
sampling feeds, plus targets and the loss mask); the loss is flow matching averaged over the sequences.

The same trainer fits the whole transformer (the embedded model learns every layout, ``procseq train base`` with a
``layouts`` section) or one of procseq's LoRAs on a frozen base (``layouts.lora``: the per-layout fallback for a base
that never learnt a layout, e.g. FLUX.1-dev; ``procseq train regional`` / ``frame-by-frame`` / ``known-frames``).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from procseq.attention.processors import CONDITION_ADAPTER, adapters_enabled, install_processors
from procseq.conditioning.frames import KnownFrames
from procseq.conditioning.history import StepEmbedding
from procseq.conditioning.lora import add_condition_lora, lora_parameters
from procseq.conditioning.plan import Plan
from procseq.conditioning.text import StepText, TextConditioning, encode_steps
from procseq.layouts import Layout
from procseq.layouts.base import Draws, LayoutBatch, LayoutInputs, batch_velocity
from procseq.layouts.one_pass import OnePassLayout
from procseq.training.config import RunConfig
from procseq.training.flow_matching import flow_matching_loss, sample_timesteps
from procseq.training.frame_data import draw_known, group_rows
from procseq.training.trainer import Trainer


class FramesDataset(Dataset):
    """Corpus sequences as their frames encoded alone: ``frame_latents`` ``(n, C, h, w)``, ``prompt``, ``captions``,
    ``domain``, ``num_frames`` (no images are read), and ``grid_latents`` ``(C, H, W)``, the whole grid encoded as
    one image, when `grid_latents` is given; `prompt_for(i, row)`, when given, writes item `i`'s prompt."""

    def __init__(self, rows: list[dict[str, Any]], frame_latents: dict[int, torch.Tensor],
                 prompt_for: Callable[[int, dict[str, Any]], str] | None = None,
                 grid_latents: dict[int, torch.Tensor] | None = None):
        self.rows, self.frame_latents, self.prompt_for = rows, frame_latents, prompt_for
        self.grid_latents = grid_latents
        self.num_frames_list = [int(r["num_frames"]) for r in rows]
        self.index = group_rows(self.num_frames_list)
        self.domains = [r["domain"] for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.rows[i]
        n = int(r["num_frames"])
        prompt = self.prompt_for(i, r) if self.prompt_for is not None else r["prompt"]
        item = {"frame_latents": self.frame_latents[n][self.index[i]], "prompt": prompt,
                "captions": list(r["captions"]), "domain": r["domain"], "num_frames": n}
        if self.grid_latents is not None:
            item["grid_latents"] = self.grid_latents[n][self.index[i]]
        return item


def add_seeded_lora(transformer: Any, adapter_name: str, rank: int, alpha: float, targets: list[str] | tuple[str, ...],
                    seed: int) -> None:
    """A new peft LoRA `adapter_name` (gaussian A, zero B) drawn under `seed`, so a run and its resume match."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        add_condition_lora(transformer, rank, alpha, targets, adapter_name=adapter_name)


class TrainerText:
    """What the layouts read text through (:class:`~procseq.layouts.base.TextEncoder`), in training: the prompts through
    the trainer's encoders (its text cache, or gradients when the text encoders train), step captions by frozen T5."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def encode_text(self, prompts: list[str], max_sequence_length: int | None = None,
                    prompts_2: list[str] | None = None) -> TextConditioning:
        """The prompts' encoding (the trainer's ``max_sequence_length``, what its text cache holds)."""
        embeds, pooled, ids = self.trainer.encode_text(prompts)
        return TextConditioning(embeds, pooled, ids)

    def encode_steps(self, captions: list[str], max_tokens_per_step: int, whole: bool = False,
                     pad: bool = False) -> StepText:
        """One plan's step captions, each encoded alone (frozen T5, no gradient)."""
        return encode_steps(self.trainer.pipe, captions, max_tokens_per_step, whole=whole, pad=pad)


class LayoutTrainer(Trainer):
    """Flow matching over mixed-layout batches (see the module docstring).

    A step runs one forward per layout present (and the known frames' condition passes reuse the weights), so the
    modules are not wrapped in DistributedDataParallel: the gradients are averaged over the processes after the
    backward (:meth:`~procseq.training.trainer.Trainer.reduce_gradients`).

    Args:
        config, pipe, save_fn: as :class:`~procseq.training.trainer.Trainer`.
        dataset: a :class:`FramesDataset`.
        layouts: the layout objects by name, and `weights` the share of sequences each gets.
        known: the shares of the known-frame sets a one-pass sub-batch draws (``none``, ``last``, ``first``,
            ``neighbours``, ``sparse``), and `known_mode` how they condition (``inplace`` | ``concat``).
        step_tokens: T5 tokens per step caption (the model's ``step_tokens``), or None (each caption's own).
        lora: the peft adapter to train on the frozen base, or None to train the whole transformer.
        embedding: Loom's step embedding, trained with the rest when given.
        blank: the latent of an empty frame ``(C, h, w)`` for a grid's empty cells.
        condition_lora: the trained LoRA also on in the known frames' condition pass (the condition LoRA's
            ``concat`` mode), and `main_lora` on in the main pass.
    """

    def __init__(self, config: RunConfig, pipe: Any, dataset: FramesDataset, save_fn: Callable[[Any, Path], None],
                 layouts: dict[str, Layout], weights: dict[str, float], known: dict[str, float] | None = None,
                 known_mode: str = "inplace", step_tokens: int | None = None, lora: str | None = None,
                 embedding: StepEmbedding | None = None, blank: torch.Tensor | None = None,
                 condition_lora: bool = False, main_lora: bool = True) -> None:
        self.lora, self.condition_lora, self.main_lora = lora, condition_lora, main_lora
        self.embedding = embedding
        super().__init__(config, pipe, dataset, save_fn)
        self.layouts = {name: layouts[name] for name in sorted(layouts) if weights.get(name, 0) > 0}
        if not self.layouts:
            raise ValueError(f"layouts.weights gives no layout a positive share: {weights}.")
        self.shares = torch.tensor([float(weights[name]) for name in self.layouts])
        self.known = {k: float(w) for k, w in (known or {"none": 1.0}).items() if float(w) > 0}
        self.known_mode, self.step_tokens = known_mode, step_tokens
        self.blank = blank
        self.mix = config.layouts.mix
        self._pooled_empty: torch.Tensor | None = None

    wrap_modules = False

    @property
    def unused_parameters(self) -> str | None:  # type: ignore[override]
        """A LoRA trained through the condition pass alone gets no gradient in the layers after its last K/V; the
        step embedding none in a step without frame-by-frame sequences."""
        if self.lora and not self.main_lora:
            return "LoRA layers after the condition pass's last K/V"
        return "the step embedding in steps without frame-by-frame sequences" if self.embedding is not None else None

    def trainable_modules(self) -> list[torch.nn.Module]:
        """The transformer (all of it, or its LoRA), and the step embedding when one is trained."""
        return [self.pipe.transformer] + ([self.embedding] if self.embedding is not None else [])

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """The LoRA's parameters (base frozen) or every transformer weight, plus the step-embedding table."""
        params = lora_parameters(modules[0], self.lora) if self.lora else super().trainable_parameters(modules[:1])
        if self.embedding is not None:
            self.embedding.table.requires_grad_(True)
            params.append(self.embedding.table)
        return params

    # -- the text, as the layouts read it -----------------------------------------------------------

    @property
    def text(self) -> TrainerText:
        """The layouts' :class:`~procseq.layouts.base.TextEncoder` over this trainer's encoders (and text cache)."""
        return TrainerText(self)

    def pooled_empty(self) -> torch.Tensor:
        """The empty prompt's pooled vector ``(1, P)`` for the known frames' condition pass (it reads no text)."""
        if self._pooled_empty is None:
            self._pooled_empty = self.text.encode_text([""]).pooled_prompt_embeds.detach()
        return self._pooled_empty

    # -- batches -------------------------------------------------------------------------------------

    def draws(self, step: int, global_rows: list[int], layout_index: int) -> Draws:
        """The draws of one sub-batch: shared by ``(seed, step, layout)``, per sequence by its global row."""
        t_cfg, seed = self.cfg.train, self.cfg.train.seed
        shared = torch.Generator().manual_seed(seed * 1_000_003 + step * 101 + 1 + layout_index)
        items = [self.item_generator(step, r) for r in global_rows]
        for g in items:  # the layout draw and the dropout came first from these generators
            torch.rand(2, generator=g)

        def timestep(g: torch.Generator) -> float:
            return float(sample_timesteps(1, t_cfg.timestep_scheme, g, t_cfg.timestep_mean, t_cfg.timestep_std,
                                          t_cfg.timestep_shift)[0])

        return Draws(shared, items, timestep)

    def item_seed(self, step: int, row: int) -> int:
        """The seed of sequence `row` of the global batch at `step`."""
        return (self.cfg.train.seed * 1_000_003 + step) * 10_007 + row

    def item_generator(self, step: int, row: int) -> torch.Generator:
        """Sequence `row` of the global batch at `step`: its own generator (layout, dropout, noise, time)."""
        return torch.Generator().manual_seed(self.item_seed(step, row))

    def known_set(self, n: int, g: torch.Generator) -> tuple[int, ...] | None:
        """A known-frame set for a one-pass sub-batch of `n`-frame sequences, or None (``known`` shares)."""
        kinds = sorted(self.known)
        kind = kinds[int(torch.multinomial(torch.tensor([self.known[k] for k in kinds]), 1, generator=g))]
        if kind == "none" or n < 3:
            return None
        return draw_known(n, {kind: 1.0}, g)

    def make_batch(self, step: int, indices: list[int]) -> list[tuple[LayoutBatch, int]]:  # type: ignore[override]
        """This process's sub-batches at `step`, one per layout present, each with its sequence count."""
        acc = self.accelerator
        rows = [acc.process_index + acc.num_processes * j for j in range(len(indices))]
        items = [self.dataset[i] for i in indices]
        names = list(self.layouts)
        picks, drops, prompt_drops = [], [], []
        edges = self.shares.cumsum(0) / self.shares.sum()
        shared_pick = torch.rand(1, generator=torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + step))
        for r in rows:
            u = torch.rand(2, generator=self.item_generator(step, r))
            pick = shared_pick if self.mix == "step" else u[0:1]
            picks.append(int(torch.searchsorted(edges, pick, right=True).clamp(max=len(names) - 1)))
            drops.append(float(u[1]) < self.cfg.data.caption_dropout)
            lone = torch.Generator().manual_seed(self.item_seed(step, r) + 1)  # its own stream: the others unchanged
            prompt_drops.append(float(torch.rand(1, generator=lone)) < self.cfg.layouts.prompt_dropout)
        out = []
        for li, name in enumerate(names):
            mine = [j for j, p in enumerate(picks) if p == li]
            if not mine:
                continue
            layout, draws = self.layouts[name], self.draws(step, [rows[j] for j in mine], li)
            lat = torch.stack([items[j]["frame_latents"] for j in mine]).to(acc.device)
            n = int(items[mine[0]]["num_frames"])
            known = None
            if isinstance(layout, OnePassLayout):
                cells = self.known_set(n, draws.shared)
                known = KnownFrames(cells, lat[:, list(cells)]) if cells else None
            plans = [Plan(items[j]["prompt"] or items[j]["domain"], items[j]["domain"], items[j]["captions"])
                     for j in mine]
            inputs = LayoutInputs(plans=plans, prompts=["" if drops[j] or prompt_drops[j] else items[j]["prompt"]
                                                        for j in mine], steps_dropped=[drops[j] for j in mine],
                                  frames=n, frame_tokens=lat.shape[-1] // 2,
                                  max_sequence_length=self.pipe.tokenizer_2.model_max_length,
                                  step_tokens=self.step_tokens, known=known, known_mode=self.known_mode,  # type: ignore[arg-type]
                                  grid_step_text=None if self.cfg.layouts.grid_step_text else False)
            model_dtype = self.accelerator.unwrap_model(self.pipe.transformer).dtype
            whole = None
            if layout.decodes_whole and "grid_latents" in items[mine[0]]:  # the grid: its target is one image's
                whole = torch.stack([items[j]["grid_latents"] for j in mine]).to(acc.device, model_dtype)
            out.append((layout.training_example(self.text, inputs, lat.to(model_dtype), draws, self.blank, whole),
                        len(mine)))
        return out

    def predict(self, batch: LayoutBatch) -> torch.Tensor:
        """The transformer's velocity for one sub-batch (procseq's LoRA in the passes the run trains it in)."""
        model = self.pipe.transformer
        unwrapped = self.accelerator.unwrap_model(model)
        guidance = None
        if unwrapped.config.guidance_embeds:
            guidance = torch.full((batch.x0.shape[0],), self.cfg.train.guidance, device=batch.x0.device)
        main = adapters_enabled(unwrapped, self.main_lora, names=(CONDITION_ADAPTER,)) \
            if self.lora == CONDITION_ADAPTER else nullcontext()
        with main:
            return batch_velocity(model, batch, self.pooled_empty(), guidance, self.accelerator.autocast,
                                  condition_lora=self.condition_lora, unwrapped=unwrapped)

    def batch_loss(self, batch: LayoutBatch) -> torch.Tensor:
        """Flow matching of one sub-batch, on the tokens its loss mask keeps (the unknown cells)."""
        return flow_matching_loss(self.predict(batch), batch.x0, batch.noise, batch.loss_mask)

    def loss_at(self, step: int, indices: list[int]) -> torch.Tensor:
        """The flow-matching loss of this process's sequences at `step`, averaged over them, each layout's times its
        ``layouts.loss_weights`` factor (1 by default)."""
        factors = self.cfg.layouts.loss_weights
        total = torch.zeros(())
        for batch, count in self.make_batch(step, indices):
            total = total + self.batch_loss(batch) * (count * float(factors.get(batch.layout, 1.0)))
        return total / len(indices)



def blank_latent(vae: Any, size: int) -> torch.Tensor:
    """The latent ``(C, h, w)`` of an empty (white) frame of `size` px, what a grid's unused cells hold."""
    from procseq.models.codec import encode_pixels

    with torch.no_grad():
        return encode_pixels(vae, torch.ones(1, 3, size, size, device=vae.device))[0].cpu()


def build_layouts(cfg: RunConfig, embedding: StepEmbedding | None) -> dict[str, Layout]:
    """The layout objects a run trains, with the options of their config sections (the LoRAs off: the trained
    weights are the ones being fitted)."""
    from procseq.layouts import FrameByFrame, FrameByFrameOptions, Grid, Regional, RegionalConfig
    from procseq.layouts.frame_by_frame import FrameByFrameTraining

    rc, fc = cfg.regional, cfg.frame_by_frame
    return {"grid": Grid(),
            "regional": Regional(RegionalConfig(blend=rc.blend, fusion=rc.fusion, ids=rc.ids,  # type: ignore[arg-type]
                                                max_tokens_per_step=rc.max_tokens_per_step, lora=False)),
            "frame-by-frame": FrameByFrame(FrameByFrameOptions(lora=False), FrameByFrameTraining(
                tuple(fc.k_choices), fc.history_dropout, fc.caption_dropout), embedding)}


LORA_SECTIONS = {"known_frames": ("known_frames", "known_frames.json"), "regional": ("regional", "regional.json"),
                 "frame_by_frame": ("frame_by_frame", "frame_by_frame.json")}


def save_lora_folder(transformer: Any, out: str | Path, adapter: str, meta: dict[str, Any],
                     embedding: StepEmbedding | None = None) -> Path:
    """Write procseq LoRA `adapter` as a diffusers LoRA folder (``pytorch_lora_weights.safetensors`` + its metadata
    file) and the step embedding beside it when given: the folder the pipeline loads for that LoRA."""
    from procseq.conditioning.history import EMBEDDING_FILE, save_step_embedding
    from procseq.conditioning.lora import save_condition_lora

    save_condition_lora(transformer, out, meta, adapter_name=adapter, meta_name=LORA_SECTIONS[adapter][1])
    if embedding is not None:
        save_step_embedding(embedding, Path(out) / EMBEDDING_FILE)
    return Path(out)


def run_layout_training(cfg: RunConfig, progress: bool = True,
                        prompt_for: Callable[[int, dict[str, Any]], str] | None = None) -> Any:
    """Train on the layouts of ``cfg.layouts`` (the whole transformer, or one LoRA on the frozen ``model.path``);
    writes ``OUTPUT_DIR/model`` (a model folder, or the LoRA's) with its training record."""
    from procseq.training.run import write_training_record

    trainer = build_layout_trainer(cfg, progress, prompt_for)
    result = trainer.train(progress=progress)
    write_training_record(Path(cfg.train.output_dir), result.model_dir)
    return result


def build_layout_trainer(cfg: RunConfig, progress: bool = True,
                         prompt_for: Callable[[int, dict[str, Any]], str] | None = None) -> LayoutTrainer:
    """The :class:`LayoutTrainer` :func:`run_layout_training` trains: the pipeline of ``cfg.model``, the frame (and
    grid) latents cached, the step embedding and the LoRA of ``cfg.layouts`` in place; nothing trained yet."""
    import dataclasses
    import json

    from procseq.conditioning.history import EMBEDDING_FILE, load_step_embedding, save_step_embedding
    from procseq.distributed import process_state
    from procseq.training.frame_data import cache_frame_latents, cache_grid_latents, cache_key
    from procseq.training.run import _save_pipeline, build_pipeline, open_corpus

    lc = cfg.layouts
    if lc.lora and not cfg.model.path:
        raise ValueError(f"Training the {lc.lora} LoRA needs a base model: set model.path (e.g. procseq-tiny).")
    grids = open_corpus(cfg)
    if lc.per_domain is not None:
        taken: dict[str, int] = {}
        grids.rows = [r for r in grids.rows if taken.setdefault(r["domain"], 0) < lc.per_domain
                      and not taken.update({r["domain"]: taken[r["domain"]] + 1})]
    pipe, metadata = build_pipeline(cfg)
    install_processors(pipe.transformer)
    cache = Path(lc.cache_dir) / cache_key(grids, pipe.vae)
    whole = None
    with process_state().main_process_first():  # many processes: the first writes the caches
        frames = cache_frame_latents(pipe.vae, grids, cache / "frames.safetensors", progress=progress)
        if lc.weights.get("grid", 0) > 0:  # the grid decodes as one image: it trains on the grid's own encoding
            whole = cache_grid_latents(pipe.vae, grids, cache / "grids.safetensors", progress=progress)
    fc = cfg.frame_by_frame
    embedding = None
    if lc.weights.get("frame-by-frame", 0) > 0 and lc.step_embedding:
        start = Path(cfg.model.path or "") / "frame_by_frame" / EMBEDDING_FILE if cfg.model.path else None
        embedding = load_step_embedding(start) if start is not None and start.is_file() else \
            StepEmbedding(pipe.transformer.config.in_channels, fc.num_positions)
    if lc.lora:
        sec = getattr(cfg, LORA_SECTIONS[lc.lora][0])
        add_seeded_lora(pipe.transformer, lc.lora, sec.rank, sec.alpha, sec.targets, cfg.train.seed)
    size = next(iter(frames.values())).shape[-1] * pipe.vae_scale_factor
    kf = cfg.known_frames
    concat_lora = lc.lora == "known_frames" and lc.known_mode == "concat"
    meta = {"layouts": dataclasses.asdict(lc), "trained_on": {"data": str(cfg.data.dir), "split": cfg.data.split,
                                                               "sequences": len(grids)}}
    if lc.step_tokens is not None:
        metadata["step_tokens"] = lc.step_tokens
        if not lc.grid_step_text:
            metadata["grid_step_text"] = False
    if not lc.lora and set(lc.known) - {"none"}:
        metadata["known_mode"] = lc.known_mode
    fbf_meta = {"rank": fc.rank, "alpha": fc.alpha, "targets": list(fc.targets), "k": fc.k,
                "k_choices": list(fc.k_choices), "history_dropout": fc.history_dropout,
                "caption_dropout": fc.caption_dropout, "num_positions": fc.num_positions,
                "rotation_offset": "0 <= o < max(1, t // (k + 1))"}

    def save(p: Any, out: Path) -> None:
        if lc.lora:
            lora_meta = {**meta, "mode": lc.known_mode, "main_lora": kf.main_lora, "rank": kf.rank, "alpha": kf.alpha,
                         "targets": list(kf.targets), "subsets": {k: w for k, w in lc.known.items() if k != "none"}} \
                if lc.lora == "known_frames" \
                else {**meta, **(fbf_meta if lc.lora == "frame_by_frame" else dataclasses.asdict(cfg.regional))}
            save_lora_folder(p.transformer, out, lc.lora, lora_meta, embedding)
            return
        _save_pipeline(metadata)(p, out)
        if embedding is not None:
            (Path(out) / "frame_by_frame").mkdir(exist_ok=True)
            save_step_embedding(embedding, Path(out) / "frame_by_frame" / EMBEDDING_FILE)
            (Path(out) / "frame_by_frame" / "frame_by_frame.json").write_text(json.dumps(fbf_meta, indent=2) + "\n")

    return LayoutTrainer(cfg, pipe, FramesDataset(grids.rows, frames, prompt_for, whole), save,
                         build_layouts(cfg, embedding),
                         dict(lc.weights), dict(lc.known), lc.known_mode, lc.step_tokens, lc.lora, embedding,
                         blank_latent(pipe.vae, size), condition_lora=concat_lora,
                         main_lora=not concat_lora or kf.main_lora)


__all__ = ["FramesDataset", "LayoutTrainer", "TrainerText", "add_seeded_lora", "blank_latent", "build_layout_trainer",
           "build_layouts", "run_layout_training", "save_lora_folder"]
