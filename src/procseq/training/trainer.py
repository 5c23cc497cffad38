"""The accelerate training loop for the Flux transformer on serpentine grids (flow matching).

Exact resume: the data order and every random draw (noise, timesteps, caption dropout) are pure
functions of ``(seed, step)``, and model + optimizer state is restored with ``Accelerator.load_state``,
so a run killed and restarted from a checkpoint produces the same loss curve as an uninterrupted
run.

Many processes (``torchrun``, ``accelerate launch``): each process takes rows ``rank, rank + world,
...`` of every global batch, and its noise, timesteps and caption dropout are the same rows of the
draws made for the whole global batch, a pure function of ``(seed, step, rank)``; so every process
draws its own, and N processes see exactly the inputs one process sees on the same global batch
(tested with 2 CPU processes for every trainer). diffusers' pipeline code reads attributes such as
``dtype`` from the text encoders, which a ``DistributedDataParallel`` wrapper does not have: the
pipeline gets a :class:`CallThrough` view of each prepared text encoder. ``find_unused_parameters`` is on
only for trainers whose ``unused_parameters`` says why some trainable weights legitimately get no
gradient in a step.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from procseq.layout import GridLayout, grid_position_ids, pack_latents
from procseq.models.codec import encode_pixels
from procseq.outputs import atomic_dir, write_text_atomic
from procseq.training import checkpoints, sharding
from procseq.training.config import RunConfig
from procseq.training.flow_matching import flow_matching_loss, interpolate, sample_timesteps
from procseq.training.optimizers import TextCache, build_optimizer


@dataclass
class TrainResult:
    """What a finished run returns: final step, last logged loss, where the model and log are."""

    step: int
    loss: float
    model_dir: Path
    log_path: Path
    seconds: float


@dataclass
class FlowBatch:
    """One noised training batch: packed clean latents ``x0`` and ``noise`` ``(B, seq, C)``, times ``t``
    ``(B,)``, position ids ``(seq, 3)``, the encoded text, and the items it came from."""

    items: list[dict[str, Any]]
    x0: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor
    img_ids: torch.Tensor
    layout: GridLayout
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    txt_ids: torch.Tensor
    guidance: torch.Tensor | None
    generator: torch.Generator
    """The step's generator, the same on every process: a per-sample draw made from it must cover the global
    batch and keep this process's rows (:meth:`Trainer.rank_rows`), as the noise and timesteps do."""

    @property
    def x_t(self) -> torch.Tensor:
        """The noised latents ``(1 - t) x0 + t noise``."""
        return interpolate(self.x0, self.noise, self.t)


def bucketed_batches(num_frames: list[int], batch_size: int, seed: int, epoch: int,
                     domains: list[str] | None = None) -> list[list[int]]:
    """One epoch of batches: indices grouped by frame count (grids of one size per batch), shuffled by (seed, epoch).

    With `domains` (one name per index) the batches are also single-domain and *domain-balanced*:
    every domain gets as many batches per epoch as the largest one, smaller domains cycling through
    fresh shuffles of their sequences.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    keys = list(num_frames) if domains is None else list(zip(num_frames, domains))
    groups: list[list[list[int]]] = []
    for key in sorted(set(keys)):
        idx = torch.tensor([i for i, k in enumerate(keys) if k == key])
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        groups.append([idx[i : i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)])
    if domains is not None:
        most = max(len(b) for b in groups)
        for group in groups:
            pool = [i for b in group for i in b]
            while group and len(group) < most:
                pool = [pool[j] for j in torch.randperm(len(pool), generator=g).tolist()]
                group += [pool[i : i + batch_size] for i in range(0, len(pool) - batch_size + 1, batch_size)][: most - len(group)]
    batches = [b for group in groups for b in group]
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


class BatchSchedule:
    """Global batch for any step, computed directly (no iterator state to save).

    `domains` (one per item) switches on domain-balanced batches (:func:`bucketed_batches`).
    """

    def __init__(self, num_frames: list[int], batch_size: int, seed: int, domains: list[str] | None = None):
        self.num_frames, self.batch_size, self.seed, self.domains = num_frames, batch_size, seed, domains
        self.per_epoch = len(bucketed_batches(num_frames, batch_size, seed, 0, domains))
        if self.per_epoch == 0:
            raise ValueError(f"The dataset has fewer sequences per frame count than batch_size={batch_size}.")
        self._cache: tuple[int, list[list[int]]] | None = None

    def __call__(self, step: int) -> list[int]:
        epoch, i = divmod(step, self.per_epoch)
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, bucketed_batches(self.num_frames, self.batch_size, self.seed, epoch, self.domains))
        return self._cache[1][i]


class CallThrough:
    """A prepared (e.g. ``DistributedDataParallel``-wrapped) module as diffusers' pipeline code sees it:
    called through the wrapper (so gradients synchronise), attributes (``dtype``, ``config``, ...) read
    from the unwrapped model."""

    def __init__(self, prepared: torch.nn.Module, unwrapped: torch.nn.Module):
        self.prepared, self.unwrapped = prepared, unwrapped

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.prepared(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unwrapped, name)


def _latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step_*"))
    return ckpts[-1] if ckpts else None


class Trainer:
    """Flow-matching training of a Flux pipeline's transformer (and optionally its text encoders).

    Args:
        config: the run config.
        pipe: a FluxPipeline-compatible object with transformer, vae, text encoders, tokenizers.
        dataset: items with ``grid`` ``(3, H, W)`` in [-1, 1]) or cached ``latents``
            (:class:`procseq.training.latents.LatentDataset`), ``prompt`` and ``num_frames``.
        save_fn: ``save_fn(pipe, dir)`` writes the final model folder.
    """

    #: Why some trainable parameters get no gradient in a step, or None if all always do: a reason switches
    #: on DDP's ``find_unused_parameters`` (subclasses set it; see the adapter and ReCraft trainers).
    unused_parameters: str | None = None
    sharded: bool = False  #: the transformer is sharded over the processes (``train.shard: fsdp``)
    #: Wrap the modules in DistributedDataParallel (one forward per step); False: the gradients are averaged over
    #: the processes after the backward (:meth:`reduce_gradients`), for trainers whose step runs several forwards
    #: or reuses weights outside the wrapped call (the layouts trainer's sub-batches and condition passes).
    wrap_modules: bool = True

    def __init__(self, config: RunConfig, pipe: Any, dataset: Dataset, save_fn: Callable[[Any, Path], None]):
        self.cfg, self.pipe, self.dataset, self.save_fn = config, pipe, dataset, save_fn
        cached = config.data.cache_text and not config.model.train_text_encoders
        self.text_cache = TextCache(pipe) if cached else None
        t = config.train
        self.out = Path(t.output_dir)
        ddp = DistributedDataParallelKwargs(find_unused_parameters=self.unused_parameters is not None)
        self.accelerator = Accelerator(
            mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.grad_accum,
            cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp],
        )
        frames = getattr(dataset, "num_frames_list", None)
        self.frames_of = list(frames) if frames is not None else [int(dataset[i]["num_frames"]) for i in range(len(dataset))]
        world = self.accelerator.num_processes
        balance = list(dataset.domains) if config.data.balance_domains else None
        self.schedule = BatchSchedule(self.frames_of, t.batch_size * world, t.seed, balance)

    def trainable_modules(self) -> list[torch.nn.Module]:
        """The modules whose parameters are optimised."""
        mods = [self.pipe.transformer]
        if self.cfg.model.train_text_encoders:
            mods += [self.pipe.text_encoder, self.pipe.text_encoder_2]
        return mods

    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T5 tokens, pooled CLIP vector and text ids, through FluxPipeline's encoder code. With
        ``data.cache_text`` (frozen encoders) each distinct prompt is encoded once and kept in CPU memory."""
        if self.text_cache is not None:
            return self.text_cache(prompts, self.accelerator.device)
        ctx = torch.enable_grad() if self.cfg.model.train_text_encoders else torch.no_grad()
        with ctx:
            return self.pipe.encode_prompt(
                prompts, None, device=self.accelerator.device,
                max_sequence_length=self.pipe.tokenizer_2.model_max_length,
            )

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Grid pixels ``(B, 3, H, W)`` -> scaled VAE latents ``(B, C, H/s, W/s)`` (distribution mode)."""
        return encode_pixels(self.pipe.vae, pixels.to(self.pipe.vae.device))

    def rank_rows(self, draw: torch.Tensor) -> torch.Tensor:
        """This process's rows (``rank, rank + world, ...``) of a draw made for the whole global batch."""
        return draw[self.accelerator.process_index :: self.accelerator.num_processes].contiguous()

    def make_batch(self, step: int, indices: list[int]) -> FlowBatch:
        """The noised inputs of one (per-process) batch; all randomness drawn from (seed, step) for the
        global batch, of which this process keeps its rows (:meth:`rank_rows`)."""
        t_cfg = self.cfg.train
        g = torch.Generator().manual_seed(t_cfg.seed * 1_000_003 + step)
        items = [self.dataset[i] for i in indices]
        n_global = len(items) * self.accelerator.num_processes
        drop = self.rank_rows(torch.rand(n_global, generator=g)) < self.cfg.data.caption_dropout
        prompts = ["" if d else it["prompt"] for it, d in zip(items, drop.tolist())]
        n_frames = int(items[0]["num_frames"])
        if "latents" in items[0]:  # cached (procseq.training.latents)
            x0_lat = torch.stack([it["latents"] for it in items]).to(self.accelerator.device)
        else:
            x0_lat = self.encode_images(torch.stack([it["grid"] for it in items]))
        b, c, h, w = x0_lat.shape
        x0 = pack_latents(x0_lat).to(self.accelerator.unwrap_model(self.pipe.transformer).dtype)  # model.dtype
        noise = self.rank_rows(torch.randn((n_global, *x0.shape[1:]), generator=g)).to(x0)
        t = self.rank_rows(sample_timesteps(n_global, t_cfg.timestep_scheme, g, t_cfg.timestep_mean,
                                            t_cfg.timestep_std, t_cfg.timestep_shift)).to(x0)
        layout = GridLayout.for_frames(n_frames)
        img_ids = grid_position_ids(layout, (w // 2) // layout.cols).to(x0)
        embeds, pooled, txt_ids = self.encode_text(prompts)
        guidance = None
        if self.accelerator.unwrap_model(self.pipe.transformer).config.guidance_embeds:
            guidance = torch.full((b,), t_cfg.guidance, device=x0.device)
        return FlowBatch(items=items, x0=x0, noise=noise, t=t, img_ids=img_ids, layout=layout, prompt_embeds=embeds,
                         pooled=pooled, txt_ids=txt_ids, guidance=guidance, generator=g)

    def model_inputs(self, batch: FlowBatch, hidden_states: torch.Tensor | None = None,
                     joint_attention_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments of the transformer call for `batch` (at ``x_t`` unless `hidden_states` is given)."""
        return dict(
            hidden_states=batch.x_t if hidden_states is None else hidden_states, timestep=batch.t,
            guidance=batch.guidance, pooled_projections=batch.pooled, encoder_hidden_states=batch.prompt_embeds,
            txt_ids=batch.txt_ids, img_ids=batch.img_ids, joint_attention_kwargs=joint_attention_kwargs,
            return_dict=False,
        )

    def predict(self, batch: FlowBatch, hidden_states: torch.Tensor | None = None,
                joint_attention_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """The transformer's velocity ``(B, seq, C)`` for `batch` (see :meth:`model_inputs`)."""
        with self.accelerator.autocast():
            return self.pipe.transformer(**self.model_inputs(batch, hidden_states, joint_attention_kwargs))[0]

    def compute_loss(self, batch: FlowBatch) -> torch.Tensor:
        """The flow-matching loss of `batch` (subclasses add terms or masks)."""
        return flow_matching_loss(self.predict(batch), batch.x0, batch.noise)

    def loss_at(self, step: int, indices: list[int]) -> torch.Tensor:
        """The training loss of one (per-process) batch at `step`."""
        return self.compute_loss(self.make_batch(step, indices))

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """The parameters to optimise (all of `modules` here); sets ``requires_grad`` on them."""
        for m in modules:
            m.requires_grad_(True)
        return [p for m in modules for p in m.parameters()]

    def train(self, progress: bool = True) -> TrainResult:
        """Run (or resume) to ``max_steps``; checkpoints every ``checkpoint_every``; returns the result.

        The output folder is locked for the whole run (:func:`procseq.training.checkpoints.output_lock`).
        """
        with checkpoints.output_lock(self.out, self.accelerator.is_main_process):
            return self._train(progress)

    def _train(self, progress: bool) -> TrainResult:
        # ~85 lines on purpose: the whole loop (set-up, resume, step, log, checkpoint, save) reads top to bottom in
        # one place, as minRF's and accelerate's examples do; its parts are the methods it calls.
        cfg, acc = self.cfg, self.accelerator
        t_cfg = cfg.train
        set_seed(t_cfg.seed, device_specific=True)  # global RNG (e.g. dropout): seed + rank
        self.pipe.vae.requires_grad_(False)
        for m in (self.pipe.text_encoder, self.pipe.text_encoder_2, self.pipe.transformer):
            m.requires_grad_(False)
        modules = self.trainable_modules()
        for m in modules:
            m.train()
        if t_cfg.gradient_checkpointing:
            self.pipe.transformer.enable_gradient_checkpointing()
        if t_cfg.shard == "fsdp" and len(modules) > 1:
            raise ValueError("train.shard: fsdp shards the transformer, but this run also trains other modules "
                             "(text encoders, a step embedding); set train.shard: none for it.")
        self.sharded = t_cfg.shard == "fsdp" and sharding.shard_transformer(self.pipe.transformer)
        params = self.trainable_parameters(modules)
        opt = build_optimizer(params, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay)
        if self.sharded:  # FSDP averages the gradients itself; its state is saved by procseq.training.sharding
            self._sharded_state = (modules[0], opt)
        else:
            if self.wrap_modules:
                prepared = acc.prepare(*modules, opt)
            else:  # not wrapped: registered so that save_state / load_state still hold their weights
                prepared = (*modules, acc.prepare(opt))
                acc.register_for_checkpointing(*modules)
            modules, opt = list(prepared[:-1]), prepared[-1]
        self.pipe.transformer = modules[0]
        if cfg.model.train_text_encoders:  # FluxPipeline.encode_prompt reads text_encoder.dtype
            self.pipe.text_encoder, self.pipe.text_encoder_2 = (CallThrough(m, acc.unwrap_model(m)) for m in modules[1:3])

        self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / "log.jsonl"
        step = checkpoints.resume(self.load_checkpoint, self.out, lambda: params)
        if acc.is_main_process:
            cfg.save_yaml(self.out / "config.yaml")
            truncate_log(log_path, step)
        start, last_loss = time.perf_counter(), last_logged_loss(log_path)
        bar = tqdm(total=t_cfg.max_steps, initial=step, disable=not (progress and acc.is_main_process),
                   desc="train")
        while step < t_cfg.max_steps:
            lr = cfg.optim.lr_at(step, t_cfg.max_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = self.schedule(step)
            mine = batch[acc.process_index :: acc.num_processes]
            with acc.accumulate(*modules):
                loss = self.loss_at(step, mine)
                checkpoints.check_finite_loss(acc.gather(loss.detach().float().reshape(1)).mean().item(), step + 1,
                                              self.out)
                acc.backward(loss)
                if acc.sync_gradients and not self.wrap_modules and not self.sharded:
                    self.reduce_gradients(params)
                if acc.sync_gradients and cfg.optim.grad_clip:
                    acc.clip_grad_norm_(params, cfg.optim.grad_clip)
                self.drop_unused_gradients(batch)
                opt.step()
                opt.zero_grad(set_to_none=True)
            step += 1
            last_loss = acc.gather(loss.detach().float().reshape(1)).mean().item()
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if acc.is_main_process and (step % t_cfg.log_every == 0 or step == t_cfg.max_steps):
                with log_path.open("a") as f:
                    f.write(json.dumps({"step": step, "loss": last_loss, "lr": lr,
                                        "elapsed_s": round(time.perf_counter() - start, 3)}) + "\n")
            if step % t_cfg.checkpoint_every == 0 or step == t_cfg.max_steps:
                self.checkpoint(step)
        bar.close()
        model_dir = self.out / "model"
        if acc.is_main_process:
            for m in modules:
                m.eval()
        if self.sharded:
            sharding.unshard(modules[0])
        if acc.is_main_process:
            self.pipe.transformer = acc.unwrap_model(modules[0])
            if cfg.model.train_text_encoders:
                self.pipe.text_encoder = acc.unwrap_model(modules[1])
                self.pipe.text_encoder_2 = acc.unwrap_model(modules[2])
            with atomic_dir(model_dir) as tmp:  # a kill mid-save leaves the previous model/ whole
                self.save_fn(self.pipe, tmp)
        acc.wait_for_everyone()
        return TrainResult(step, last_loss, model_dir, log_path, time.perf_counter() - start)

    def reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients over the processes in one all-reduce (``wrap_modules = False``); a gradient no process
        produced stays None, one that only some produced counts as zeros on the others."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        used = acc.reduce(torch.tensor([float(p.grad is not None) for p in params], device=acc.device), "sum")
        live = [p for p, u in zip(params, used.tolist()) if u > 0]
        if not live:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
        flat = acc.reduce(flat, "mean")
        start = 0
        for p in live:
            p.grad = flat[start:start + p.numel()].view_as(p).clone()
            start += p.numel()

    def drop_unused_gradients(self, batch: list[int]) -> None:
        """Before the optimizer step on global batch `batch`: set to None the gradients a sharded run reduced
        to zeros for weights no process used (one process or DDP leave those None, and the optimizer skips them)."""

    def load_checkpoint(self, folder: Path) -> None:
        """Restore model, optimizer and random state from a checkpoint folder (sharded state included)."""
        self.accelerator.load_state(str(folder))
        if self.sharded:
            sharding.load_state(folder, *self._sharded_state)

    def checkpoint(self, step: int) -> Path:
        """Save model + optimizer state at `step` crash-safely (:mod:`procseq.training.checkpoints`); once it
        verifies, keep the newest ``keep_checkpoints``. Non-finite weights stop training before anything is saved."""
        acc = self.accelerator
        if not checkpoints.all_finite(p for m in self.trainable_modules() for p in m.parameters()):
            raise checkpoints.NonFiniteError(f"The weights hold NaN or infinity at step {step}; stopped before saving "
                                             "or deleting any checkpoint. Lower optim.lr, then resume.")

        def write(tmp: Path) -> None:
            acc.save_state(str(tmp))
            if self.sharded:
                sharding.save_state(tmp, *self._sharded_state, acc.is_main_process)
            if acc.is_main_process:
                write_text_atomic(tmp / checkpoints.STATE, json.dumps({"step": step}))

        path = checkpoints.write_checkpoint_dir(checkpoints.checkpoint_path(self.out, step), write,
                                                acc.is_main_process, acc.wait_for_everyone)
        if acc.is_main_process:
            checkpoints.prune(self.out, path, self.cfg.train.keep_checkpoints)
        return path


def last_logged_loss(log_path: Path) -> float:
    """The newest loss in ``log.jsonl`` (what a run that is already finished reports), NaN if none."""
    if not log_path.is_file():
        return float("nan")
    lines = [ln for ln in log_path.read_text().splitlines() if ln and _logged_step(ln) != math.inf]
    return float(json.loads(lines[-1])["loss"]) if lines else float("nan")


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines past `step` (written by a run that died after its last checkpoint)."""
    if not log_path.is_file():
        return
    lines = [ln for ln in log_path.read_text().splitlines() if ln and _logged_step(ln) <= step]
    write_text_atomic(log_path, "".join(ln + "\n" for ln in lines))


def _logged_step(line: str) -> float:
    """The step of one log line; a torn last line (a kill mid-write) counts as past every checkpoint."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
