"""``procseq train adapter``: multi-domain LoRAs (asymmetric, masked or one standard LoRA) on a frozen base.

The base pipeline (e.g. procseq-tiny) is loaded, the adapter of ``config.adapter`` is added to its
transformer, and only the adapter is trained with flow matching (text encoders, VAE and base weights
frozen). Each sample is routed to its own domain (per-sample routing, design decision 7: the domain
comes from the data record, never from the caption). With ``adapter.alignment.enabled`` the loss
adds ProcessMaker's representation alignment to the same transformer with adapters off.

Privacy of masked rows: a row owned by domain ``d`` gets zero gradient from other domains' samples,
and a ``lora_B`` of an asymmetric LoRA gets no gradient at all (``None``, skipped by the optimizer)
when its domain is absent. Weight decay would still shrink rows/Bs that are not in the batch, so the
adapter presets use ``optim.weight_decay: 0``.

The result is ``<output_dir>/model/adapters.safetensors`` (:func:`procseq.adapters.save_adapters`
format) with the training record beside it (``training/``: config, log, loss.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from procseq.adapters import (
    AsymmetricLoRAConfig,
    MaskedLoRAConfig,
    add_asymmetric_lora,
    add_domain,
    add_masked_lora,
    domains,
    clear_routing,
    load_adapters,
    save_adapters,
    set_routing,
    trainable_parameters,
)
from procseq.adapters.routing import DEFAULT_TARGET_MODULES, adapter_layers
from procseq.distributed import process_state
from procseq.training.alignment import AlignmentConfig, RepresentationAlignment, capture_hidden_states
from procseq.training.config import AdapterConfig, RunConfig
from procseq.training.flow_matching import flow_matching_loss
from procseq.training.trainer import FlowBatch, Trainer, TrainResult

ADAPTER_FILE = "adapters.safetensors"


def adapter_domains(cfg: AdapterConfig, data_domains: list[str]) -> list[str]:
    """The domain names the adapter holds: ``[cfg.name]`` for one standard LoRA, else its domains."""
    if cfg.kind == "lora":
        return [cfg.name]
    return list(cfg.domains or data_domains)


def add_adapter(transformer: torch.nn.Module, cfg: AdapterConfig, data_domains: list[str]) -> list[str]:
    """Add the adapter `cfg` describes to `transformer` (base frozen); returns the wrapped module paths.

    ``kind: lora`` is a standard LoRA: an asymmetric LoRA with a single ``B`` (then ``W0 + B A``, exactly
    peft's LoRA), so every kind shares one implementation, one file format and one export path.
    With ``init_from`` the adapter is that file's (its kind, layout and weights), plus the data's domains it
    lacks (their new parameters start at zero); ``kind`` must match the file's.
    """
    names = adapter_domains(cfg, data_domains)
    if cfg.init_from:
        from procseq.adapters.io import adapter_file_info

        info = adapter_file_info(cfg.init_from)
        kind = "asymmetric" if cfg.kind == "lora" else cfg.kind
        if info["kind"] != kind:
            raise ValueError(f"adapter.init_from {cfg.init_from} holds a {info['kind']} LoRA but adapter.kind is "
                             f"{cfg.kind!r}; set adapter.kind={info['kind']}.")
        load_adapters(transformer, cfg.init_from)
        for name in names:
            if name not in domains(transformer):
                add_domain(transformer, name)
        return list(adapter_layers(transformer))
    targets = tuple(cfg.target_modules or DEFAULT_TARGET_MODULES)
    if cfg.kind == "masked":
        return add_masked_lora(transformer, names, MaskedLoRAConfig(
            rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout, domain_fraction=cfg.domain_fraction,
            max_domains=cfg.max_domains, target_modules=targets, mask=cfg.mask, row_mask=cfg.row_mask, band=cfg.band,
            rank_pattern=dict(cfg.rank_pattern), alpha_pattern=dict(cfg.alpha_pattern)))
    return add_asymmetric_lora(transformer, names, AsymmetricLoRAConfig(
        rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout, target_modules=targets,
        rank_pattern=dict(cfg.rank_pattern), alpha_pattern=dict(cfg.alpha_pattern)))


class AdapterTrainer(Trainer):
    """The flow-matching :class:`~procseq.training.trainer.Trainer` with only the adapter trainable,
    per-sample domain routing and optional representation alignment."""

    def __init__(self, config: RunConfig, pipe: Any, dataset: Any, save_fn: Any) -> None:
        super().__init__(config, pipe, dataset, save_fn)
        a = config.adapter
        self.route_of = {d: (a.name if a.kind == "lora" else d) for d in set(dataset.domains)}
        known = domains(pipe.transformer)
        missing = sorted(d for d in set(self.route_of.values()) if d not in known)
        if missing:
            raise ValueError(f"The data has domains {missing} that the adapter does not hold ({known}); list them "
                             f"in adapter.domains or restrict data.domains.")
        self.alignment = None
        if a.alignment.enabled:
            self.alignment = RepresentationAlignment(pipe.transformer, AlignmentConfig(
                lambda0=a.alignment.lambda0, gamma=a.alignment.gamma, schedule=a.alignment.schedule,
                blocks=a.alignment.blocks))

    @property
    def unused_parameters(self) -> str | None:
        """Asymmetric LoRA: the ``lora_B`` of a domain absent from the step's batch gets no gradient (by
        design, see the module docstring), so DDP must not wait for it."""
        if self.cfg.adapter.kind == "asymmetric":
            return "the lora_B of every domain absent from the batch"
        return None

    def drop_unused_gradients(self, batch: list[int]) -> None:
        """Sharded asymmetric LoRA: the ``lora_B`` of a domain absent from the global batch gets no update, as
        unsharded (FSDP's reduce-scatter hands it a zero gradient, which momentum would still apply)."""
        if not self.sharded or self.cfg.adapter.kind != "asymmetric":
            return
        present = {self.route_of[self.dataset.domains[i]] for i in batch}
        for layer in adapter_layers(self.accelerator.unwrap_model(self.pipe.transformer)).values():
            for name in set(layer.domain_names) - present:
                for p in layer.domain_parameters(name):
                    p.grad = None

    def trainable_modules(self) -> list[torch.nn.Module]:
        """Only the transformer (its adapter layers) is optimised."""
        return [self.pipe.transformer]

    def trainable_parameters(self, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
        """Every adapter parameter (shared A unless ``adapter.freeze_a``, every domain's B or rows); base
        weights stay frozen."""
        model = modules[0]
        return trainable_parameters(model, domains(model), train_shared=not self.cfg.adapter.freeze_a)

    def compute_loss(self, batch: FlowBatch) -> torch.Tensor:
        """Flow matching with each sample routed to its domain, plus alignment when enabled. The routing stays
        set through the backward (gradient checkpointing runs the forward again there) until the next step's."""
        model = self.accelerator.unwrap_model(self.pipe.transformer)
        set_routing(model, domains=[self.route_of[it["domain"]] for it in batch.items])
        if self.alignment is None:
            return super().compute_loss(batch)
        # the student pass goes through the prepared (possibly DDP-wrapped) model, so gradients sync
        with capture_hidden_states(model, self.alignment.blocks) as student:
            pred = self.predict(batch)
        with self.accelerator.autocast():
            teacher = self.alignment.teacher_states(**self.model_inputs(batch))
        align = self.alignment.loss(dict(student), teacher, batch.t)
        return flow_matching_loss(pred, batch.x0, batch.noise) + align.loss

    def train(self, progress: bool = True) -> TrainResult:
        """:meth:`Trainer.train`, leaving the transformer unrouted afterwards."""
        try:
            return super().train(progress)
        finally:
            clear_routing(self.accelerator.unwrap_model(self.pipe.transformer))


def save_adapter_model(pipe: Any, out: Path) -> None:
    """The trainer's ``save_fn``: the adapter file (not the frozen base) in `out`."""
    save_adapters(pipe.transformer, Path(out) / ADAPTER_FILE)


def run_adapter_training(cfg: RunConfig, progress: bool = True) -> TrainResult:
    """Train the adapter of ``cfg.adapter`` on ``cfg.data`` over the base ``cfg.model.path``; resumable."""
    from procseq.training.latents import cache_latents
    from procseq.training.run import build_pipeline, open_corpus, require_base_model, write_training_record

    require_base_model(cfg, "An adapter")
    if cfg.model.train_text_encoders:
        raise ValueError("Adapter training keeps the text encoders frozen; set model.train_text_encoders: false.")
    dataset: Any = open_corpus(cfg)
    pipe, _ = build_pipeline(cfg)
    with torch.random.fork_rng(devices=[]):  # lora_A's Kaiming init: a function of the seed alone
        torch.manual_seed(cfg.train.seed)
        add_adapter(pipe.transformer, cfg.adapter, sorted(set(dataset.domains)))
    out = Path(cfg.train.output_dir)
    if cfg.data.cache_latents:
        with process_state().main_process_first():  # many processes: the first writes the cache
            dataset = cache_latents(pipe.vae, dataset, out / "latents.safetensors", progress=progress)
    result = AdapterTrainer(cfg, pipe, dataset, save_adapter_model).train(progress=progress)
    write_training_record(out, result.model_dir)
    return result
