"""``procseq train recraft``: the ReCraft LoRA (finished image -> the earlier frames of its process).

The base model is frozen; one peft LoRA (adapter ``"recraft"``, diffusers naming) is trained with the
flow-matching loss of :class:`~procseq.training.trainer.Trainer`, restricted to the tokens of the
frames being generated (every cell but the final one). The final frame of each training grid is
encoded **alone** by the VAE (as the pipeline encodes a user's picture) and cached once.

``recraft.mode``:

- ``concat``: the clean final-frame tokens run in their own pass at t = 0 (LoRA on) and hand their
  K/V to the main pass (LoRA off) through :mod:`procseq.attention.processors`; gradients reach the
  LoRA through the cached K/V only.
- ``inplace``: the final cell of ``x_t`` is replaced by the clean latent; the LoRA is an ordinary
  LoRA of the main pass.

Checkpoints and exact resume are the base Trainer's. The result is ``<output_dir>/model/`` with
``pytorch_lora_weights.safetensors`` (loadable by ``FluxPipeline.load_lora_weights``), ``recraft.json``
and the training record (``training/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from procseq.attention.processors import (
    ConditionCache,
    adapters_enabled,
    condition_processors,
    run_condition_pass,
)
from procseq.attention.rope import cell_token_mask, condition_position_ids
from procseq.distributed import process_state
from procseq.layout import (
    GridLayout,
    frame_token_indices,
    grid_tensor_to_frames,
    pack_latents,
)
from procseq.pipelines.image_to_sequence import (
    ADAPTER_NAME,
    LORA_FILE,
    LORA_META,
    MODES,
    domain_prompt,
)
from procseq.training.config import RecraftConfig, RunConfig
from procseq.training.flow_matching import flow_matching_loss
from procseq.training.latents import LatentDataset
from procseq.training.trainer import FlowBatch, Trainer, TrainResult


class RecraftDataset(Dataset):
    """Cached grid latents with each grid's final frame encoded alone (``cond_latents`` ``(C, h, w)``);
    the prompt is the domain phrase (:func:`~procseq.pipelines.image_to_sequence.domain_prompt`)."""

    def __init__(self, grids: LatentDataset, finals: dict[int, torch.Tensor]):
        self.grids, self.finals = grids, finals
        self.num_frames_list = grids.num_frames_list
        self.domains = grids.domains

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.grids[i])
        r = self.grids.records[i]
        item["cond_latents"] = self.finals[r["num_frames"]][r["row"]]
        item["prompt"] = domain_prompt(item["domain"])
        return item


@torch.no_grad()
def cache_final_frames(vae: Any, dataset: Any, path: Path, batch_size: int = 256,
                       progress: bool = True) -> dict[int, torch.Tensor]:
    """Scaled VAE latents of every grid's final frame, encoded alone, in the row order of
    :func:`procseq.training.latents.cache_latents` (grouped by frame count); reused if `path` exists."""
    path = Path(path)
    if path.is_file():
        cached = {int(k.split("_")[1]): v for k, v in load_file(str(path)).items()}
        if sum(len(v) for v in cached.values()) == len(dataset):
            return cached
    by_frames: dict[int, list[int]] = {}
    for i, n in enumerate(dataset.num_frames_list):
        by_frames.setdefault(int(n), []).append(i)
    out: dict[int, torch.Tensor] = {}
    bar = tqdm(total=len(dataset), desc="cache final frames", disable=not progress)
    for n, indices in sorted(by_frames.items()):
        layout, chunks = GridLayout.for_frames(n), []
        for start in range(0, len(indices), batch_size):
            finals = torch.stack([grid_tensor_to_frames(dataset[i]["grid"], layout)[-1]
                                  for i in indices[start : start + batch_size]])
            z = vae.encode(finals.to(vae.device, vae.dtype)).latent_dist.mode()
            chunks.append(((z - vae.config.shift_factor) * vae.config.scaling_factor).float().cpu())
            bar.update(len(finals))
        out[n] = torch.cat(chunks)
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"frames_{n}": t.contiguous() for n, t in out.items()}, str(path))
    return out


@dataclass
class RecraftBatch(FlowBatch):
    """A :class:`FlowBatch` plus the clean condition tokens ``(B, T, C)``, their ids ``(T, 3)``, the
    final cell's token indices ``(T,)`` and the loss mask ``(seq,)`` (true on the generated frames)."""

    cond: torch.Tensor
    cond_ids: torch.Tensor
    final_index: torch.Tensor
    loss_mask: torch.Tensor


class RecraftTrainer(Trainer):
    """Flow matching of the ReCraft LoRA only, loss on the generated frames (see the module docstring)."""

    def __init__(self, config: RunConfig, pipe: Any, dataset: Any, save_fn: Any) -> None:
        super().__init__(config, pipe, dataset, save_fn)
        if config.recraft.mode not in MODES:
            raise ValueError(f"recraft.mode must be one of {', '.join(MODES)}, got {config.recraft.mode!r}.")
        self.mode = config.recraft.mode
        self.cache = ConditionCache()
        self._branch_pooled: torch.Tensor | None = None

    @property
    def unused_parameters(self) -> str | None:
        """``concat``: only each layer's K/V leave the condition pass, so the LoRA of the last block's query,
        MLP and output projection and of the final ``proj_out`` never reach the loss (no gradient)."""
        return "LoRA layers after the condition pass's last K/V" if self.cfg.recraft.mode == "concat" else None

    def trainable_modules(self) -> list[torch.nn.Module]:
        """Only the transformer (its LoRA layers) is optimised."""
        return [self.pipe.transformer]

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """The ``recraft`` LoRA parameters; the base weights stay frozen."""
        params = [p for n, p in modules[0].named_parameters() if "lora_" in n and f".{ADAPTER_NAME}." in n]
        if not params:
            raise ValueError("The transformer has no 'recraft' LoRA; add it with add_recraft_lora first.")
        for p in params:
            p.requires_grad_(True)
        return params

    def branch_pooled(self) -> torch.Tensor:
        """The pooled vector of the empty prompt ``(1, P)``: the condition branch never sees the text."""
        if self._branch_pooled is None:
            with torch.no_grad():
                self._branch_pooled = self.pipe.encode_prompt(
                    [""], None, device=self.accelerator.device,
                    max_sequence_length=self.pipe.tokenizer_2.model_max_length)[1]
        return self._branch_pooled

    def make_batch(self, step: int, indices: list[int]) -> RecraftBatch:
        """The base batch plus the clean final-frame tokens, their ids and the loss mask."""
        base = super().make_batch(step, indices)
        cond = pack_latents(torch.stack([it["cond_latents"] for it in base.items]).to(base.x0))
        frame_tokens = round((cond.shape[1]) ** 0.5)
        layout = base.layout
        return RecraftBatch(
            **{f.name: getattr(base, f.name) for f in fields(FlowBatch)}, cond=cond,
            cond_ids=condition_position_ids(layout, frame_tokens).to(base.img_ids),
            final_index=frame_token_indices(layout, frame_tokens)[-1].to(base.x0.device),
            loss_mask=~cell_token_mask(layout, frame_tokens).to(base.x0.device),
        )

    def predict(self, batch: FlowBatch, hidden_states: torch.Tensor | None = None,
                joint_attention_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """Velocity of the main pass, conditioned as ``recraft.mode`` says."""
        assert isinstance(batch, RecraftBatch)
        x = batch.x_t if hidden_states is None else hidden_states
        if self.mode == "inplace":
            x = x.clone()
            x[:, batch.final_index] = batch.cond
            return super().predict(batch, x, joint_attention_kwargs)
        model = self.accelerator.unwrap_model(self.pipe.transformer)
        with condition_processors(model, self.cache) as cache:
            with self.accelerator.autocast():
                run_condition_pass(model, cache, batch.cond, batch.cond_ids, self.branch_pooled(), batch.guidance)
            with cache.as_mode("use"), adapters_enabled(model, False):
                return super().predict(batch, x, joint_attention_kwargs)

    def compute_loss(self, batch: FlowBatch) -> torch.Tensor:
        """Flow matching on the generated frames' tokens only (the final cell is the condition)."""
        assert isinstance(batch, RecraftBatch)
        return flow_matching_loss(self.predict(batch), batch.x0, batch.noise, batch.loss_mask)


def add_recraft_lora(transformer: Any, cfg: RecraftConfig) -> None:
    """Add the peft LoRA ``"recraft"`` (rank, alpha, target modules of `cfg`) to `transformer`."""
    from peft import LoraConfig

    transformer.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.targets),
                                       init_lora_weights="gaussian"), adapter_name=ADAPTER_NAME)


def save_recraft_lora(transformer: Any, out: Path, cfg: RecraftConfig) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (peft/diffusers keys) and ``recraft.json`` into `out`."""
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict

    out = Path(out)
    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME)
    FluxPipeline.save_lora_weights(out, transformer_lora_layers=state, weight_name=LORA_FILE, safe_serialization=True)
    (out / LORA_META).write_text(json.dumps({"mode": cfg.mode, "rank": cfg.rank, "alpha": cfg.alpha,
                                             "targets": list(cfg.targets)}, indent=2) + "\n")
    return out


def run_recraft_training(cfg: RunConfig, progress: bool = True) -> TrainResult:
    """Train the ReCraft LoRA of ``cfg.recraft`` on ``cfg.data`` over the base ``cfg.model.path``; resumable."""
    from procseq.data.dataset import GridDataset
    from procseq.training.latents import cache_latents
    from procseq.training.run import build_pipeline, write_training_record

    if not cfg.model.path:
        raise ValueError("ReCraft needs a base model: set model.path (e.g. procseq-tiny or a Flux folder).")
    if cfg.recraft.mode not in MODES:
        raise ValueError(f"recraft.mode must be one of {', '.join(MODES)}, got {cfg.recraft.mode!r}.")
    data_dir = Path(cfg.data.dir)
    if not (data_dir / cfg.data.split).is_dir():
        raise FileNotFoundError(
            f"No {cfg.data.split!r} split in {data_dir}; make the corpus first: procseq data make --out {data_dir}")
    grids = GridDataset(data_dir, cfg.data.split, domains=cfg.data.domains)
    if len(grids) == 0:
        raise ValueError(f"No sequences of domains {cfg.data.domains} in {data_dir}/{cfg.data.split}.")
    pipe, _ = build_pipeline(cfg)
    cache = Path(cfg.recraft.cache_dir)
    with process_state().main_process_first():  # many processes: the first writes the caches
        latents = cache_latents(pipe.vae, grids, cache / "latents.safetensors", progress=progress)
        finals = cache_final_frames(pipe.vae, grids, cache / "final_frames.safetensors", progress=progress)
    with torch.random.fork_rng(devices=[]):  # the LoRA's init: a function of the seed alone, on every process
        torch.manual_seed(cfg.train.seed)
        add_recraft_lora(pipe.transformer, cfg.recraft)

    def save(p: Any, out: Path) -> None:
        save_recraft_lora(p.transformer, out, cfg.recraft)

    out = Path(cfg.train.output_dir)
    result = RecraftTrainer(cfg, pipe, RecraftDataset(latents, finals), save).train(progress=progress)
    write_training_record(out, result.model_dir)
    return result


__all__ = ["RecraftBatch", "RecraftDataset", "RecraftTrainer", "add_recraft_lora", "cache_final_frames",
           "run_recraft_training", "save_recraft_lora"]
