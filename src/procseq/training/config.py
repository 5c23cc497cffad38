"""Typed training configs (dataclasses) with YAML files and a named preset registry."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import yaml

from procseq.conditioning.lora import DEFAULT_TARGETS as CONDITION_TARGETS
from procseq.outputs import write_text_atomic

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class ModelConfig:
    """What to train. `path`: an existing Flux diffusers folder to fine-tune; None builds procseq-tiny
    from scratch with the `tiny` overrides of :class:`procseq.models.tiny.TinyConfig`."""

    path: str | None = None
    tiny: dict[str, Any] = field(default_factory=dict)
    train_text_encoders: bool = False
    tokenizer_texts: str = "synthetic"  # from scratch: "synthetic" (v1), "corpus" (v2: the split's data.domains) or
    # "all-domains" (v3: every training domain's train-pool text, adapter domains too; procseq.training.run)
    dtype: str = "float32"  # the weights as loaded: "bfloat16" halves a frozen base (LoRA parameters stay float32)

    def __post_init__(self) -> None:
        if self.path is not None and self.path.startswith("~"):
            self.path = os.path.expanduser(self.path)  # a preset's stage 2 starts from stage 1's run folder
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"model.dtype must be float32, bfloat16 or float16, got {self.dtype!r}.")
        if self.tokenizer_texts not in ("synthetic", "corpus", "all-domains"):
            raise ValueError(f"model.tokenizer_texts must be 'synthetic', 'corpus' or 'all-domains', "
                             f"got {self.tokenizer_texts!r}.")


@dataclass
class DataConfig:
    """The corpus folder written by ``procseq data make``, and which part of it to train on."""

    dir: str = "data_cache/corpus"
    split: str = "train"
    domains: list[str] | None = None
    caption_dropout: float = 0.1
    cache_latents: bool = False
    cache_text: bool = False  # frozen text encoders: each distinct prompt encoded once, kept in CPU memory (FLUX.1-dev: 4 MB each)
    num_workers: int = 0
    balance_domains: bool = False  # every domain as many (single-domain) batches per epoch as the largest
    phrasings: int = 1  # items per sequence, one per stored phrasing (data make --wording paraphrase --phrasings K)
    domain_prefix: bool = False  # the domain phrase in front of every prompt; procseq.json records it for the pipeline
    step_count_prefix: bool = False  # with domain_prefix: "<phrase> process in <n> steps: <prompt>"; recorded likewise

    def __post_init__(self) -> None:
        self.dir = os.path.expanduser(self.dir)  # presets keep long-run corpora in ~/.cache/procseq


LR_SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("came", "adamw", "adamw8bit")
SHARDING = ("none", "fsdp")


@dataclass
class OptimConfig:
    """Optimizer: ``came`` (CAME, as MakeAnything and ProcessMaker use), ``adamw``, or ``adamw8bit``
    (bitsandbytes' 8-bit AdamW, where installed)."""

    name: str = "came"
    lr: float = 2e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    grad_clip: float = 1.0
    schedule: str = "constant"  # after warmup: "constant", or "linear" / "cosine" decay to min_lr at max_steps
    decay_steps: int = 0  # with a decay: over the last decay_steps steps (0: everything after warmup)
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}.")
        if self.schedule not in LR_SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.schedule!r}.")

    def lr_at(self, step: int, max_steps: int) -> float:
        """The learning rate of optimizer step `step` (0-based) of a run to `max_steps`: a linear warmup, then
        constant or, with a decay schedule, from ``lr`` down to ``min_lr`` over the last ``decay_steps``
        (warmup-stable-decay). A function of the step alone, so a resumed run follows the same curve."""
        lr = self.lr * min(1.0, (step + 1) / max(1, self.warmup_steps))
        if self.schedule == "constant":
            return lr
        start = max(self.warmup_steps, max_steps - self.decay_steps) if self.decay_steps else self.warmup_steps
        if step < start:
            return lr
        frac = min(1.0, (step + 1 - start) / max(1, max_steps - start))
        shape = frac if self.schedule == "linear" else (1 - math.cos(math.pi * frac)) / 2
        return lr + (self.min_lr - lr) * shape


@dataclass
class TrainConfig:
    """The loop: steps, batch, precision, checkpoints, timestep sampling."""

    output_dir: str = "runs/train"
    max_steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    mixed_precision: str = "no"  # "bf16" only pays off on CPUs with AMX/avx512_bf16, or GPUs
    gradient_checkpointing: bool = False  # recompute each transformer block in the backward (activations of one block)
    shard: str = "none"  # "fsdp": the transformer's weights, gradients and optimizer state sharded over the processes
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    timestep_scheme: str = "logit_normal"
    timestep_mean: float = 0.0
    timestep_std: float = 1.0
    timestep_shift: float = 1.0
    guidance: float = 1.0

    def __post_init__(self) -> None:
        self.output_dir = os.path.expanduser(self.output_dir)  # presets keep long runs in ~/.cache/procseq/runs
        if self.shard not in SHARDING:
            raise ValueError(f"train.shard must be one of {', '.join(SHARDING)}, got {self.shard!r}.")


@dataclass
class AutoencoderConfig:
    """Stage 1 (procseq-tiny from scratch): autoencoder training on corpus frames; ``steps: 0`` skips it."""

    steps: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    kl_weight: float = 1e-6
    checkpoint_every: int = 500
    log_every: int = 50
    max_frames: int = 20000
    seed: int = 0
    crop: int = 16
    bf16: bool = False  # bf16 is emulated (~100x slower) on CPUs without AMX/avx512_bf16


@dataclass
class AlignmentSection:
    """ProcessMaker's representation alignment (:mod:`procseq.training.alignment`) during adapter training."""

    enabled: bool = False
    lambda0: float = 0.5
    gamma: float = 0.1
    schedule: str = "1-t"  # "1-t" | "t" | "constant"
    blocks: list[str] | None = None  # None: FLUX.1's reference blocks scaled to this depth


@dataclass
class AdapterConfig:
    """``procseq train adapter``: which multi-domain LoRA to train on the frozen base (:mod:`procseq.adapters`).

    ``kind``: ``asymmetric`` (shared A, one B per domain), ``masked`` (one LoRA, per-domain row masks)
    or ``lora`` (one standard LoRA for every domain of the data, saved as the single domain ``name``).
    ``domains``: the adapter's domains (default: ``data.domains``).
    ``rank_pattern`` / ``alpha_pattern``: per-layer rank and alpha, ``{regex: value}`` full-matched on module
    paths (peft's names), e.g. ``{"single_transformer_blocks\\..*": 8}``.
    Masked only: ``mask`` is ``rows`` (the default: the layer's output rows, as ProcessMaker specifies it) or
    ``rank`` (rank-row blocks), ``row_mask`` ``fixed`` (the first rows domain-specific) or ``learned``;
    ``band`` ``per-domain`` (the default: each domain owns its own ``domain_fraction`` of the rows, as
    ProcessMaker specifies it) or ``split`` (one ``domain_fraction`` band cut among the domains, procseq's first
    version); ``max_domains`` blocks to reserve. Left unset (null), ``mask`` and ``band`` take those defaults
    for ``kind: masked`` (an adapter file keeps its own layout whatever the config says).
    ``freeze_a``: keep every shared ``lora_A`` at its initial value and train only the domains' B (and a
    learned mask), MakeAnything's option; with ``init_from`` (an adapter file, e.g. a trained asymmetric
    LoRA) the A, the Bs and the domains of that file are the starting point, and the data's new domains
    are added to it.
    """

    kind: str = "asymmetric"
    domains: list[str] | None = None
    name: str = "all"
    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.0
    domain_fraction: float = 0.3
    max_domains: int | None = None
    mask: str | None = None  # masked: "rows" when unset (ProcessMaker); other kinds: unset or "rank"
    row_mask: str = "fixed"
    band: str | None = None  # masked: "per-domain" when unset (ProcessMaker); other kinds: unset
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    freeze_a: bool = False
    init_from: str | None = None
    target_modules: list[str] | None = None
    alignment: AlignmentSection = field(default_factory=AlignmentSection)

    def __post_init__(self) -> None:
        if self.kind not in ("asymmetric", "masked", "lora"):
            raise ValueError(f"adapter.kind must be 'asymmetric', 'masked' or 'lora', got {self.kind!r}.")
        if self.mask not in (None, "rank", "rows"):
            raise ValueError(f"adapter.mask must be 'rank' or 'rows', got {self.mask!r}.")
        if self.row_mask not in ("fixed", "learned"):
            raise ValueError(f"adapter.row_mask must be 'fixed' or 'learned', got {self.row_mask!r}.")
        if self.band not in (None, "per-domain", "split"):
            raise ValueError(f"adapter.band must be 'per-domain' or 'split', got {self.band!r}.")
        if self.kind != "masked" and ((self.mask or "rank"), self.row_mask, self.band) != ("rank", "fixed", None):
            raise ValueError("adapter.mask, adapter.row_mask and adapter.band apply to kind: masked only; "
                             "set adapter.kind=masked.")
        if self.kind == "masked":  # ProcessMaker's layout for a new training
            self.mask, self.band = self.mask or "rows", self.band or "per-domain"
        if self.row_mask == "learned" and self.mask != "rows":
            raise ValueError("adapter.row_mask=learned needs adapter.mask=rows.")


@dataclass
class KnownFramesConfig:
    """The condition LoRA (``procseq train known-frames``): one LoRA that reads known frames at any cells.

    `mode`: ``concat`` (known tokens in their own t=0 pass, LoRA on that pass only) or ``inplace`` (the
    known cells of x_t replaced by their clean latents, LoRA on the main pass). `subsets`: the weights of
    the known sets drawn per batch: ``last`` (ReCraft), ``first`` (the first k: continuation),
    ``neighbours`` (cells i-1 and i+1: interpolation), ``sparse`` (a random set). `cut_fraction`: the
    share of sequences that also give a 3-frame cut (interpolation in short sequences). `targets`: the
    transformer's linear layers that get LoRA (peft ``target_modules``). `cache_dir`: where grid and
    per-frame latents are cached, keyed by what they were computed from.
    """

    mode: str = "concat"
    rank: int = 16
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: [
        "x_embedder", "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_mlp", "proj_out"])
    subsets: dict[str, float] = field(default_factory=lambda: {
        "last": 0.3, "first": 0.25, "neighbours": 0.2, "sparse": 0.25})
    cut_fraction: float = 0.0  # 3-frame cuts: off by default, they swamped training (BENCHMARKS, issue 11)
    main_lora: bool = False  # concat: the LoRA also on the main pass, whose queries see the known keys' cells
    cache_dir: str = "data_cache/known_frames"

    def __post_init__(self) -> None:
        if self.mode not in ("concat", "inplace"):
            raise ValueError(f"known_frames.mode must be 'concat' or 'inplace', got {self.mode!r}.")
        bad = sorted(set(self.subsets) - {"last", "first", "neighbours", "sparse"})
        if bad or not self.subsets or any(float(w) < 0 for w in self.subsets.values()) \
                or sum(float(w) for w in self.subsets.values()) <= 0:
            raise ValueError("known_frames.subsets must give non-negative weights to last, first, neighbours, "
                             f"sparse (some positive); got {self.subsets}.")
        if not 0 <= float(self.cut_fraction) <= 1:
            raise ValueError(f"known_frames.cut_fraction must be in [0, 1], got {self.cut_fraction}.")


@dataclass
class FrameByFrameConfig:
    """The frame-by-frame weights (``procseq train frame-by-frame``): a LoRA plus Loom's step embedding.

    Per batch one frame ``t`` is drawn for all sequences, ``K`` from `k_choices` (0, no history, with
    probability `history_dropout`) and Loom's rotation offset, so every history position is seen. The step
    caption is left out with probability `caption_dropout` (the plan-text-only case). `k` is the inference
    default recorded with the weights; `num_positions` the rows of the step-embedding table;
    `sequences_per_domain` trains on the first N sequences of each domain (None: all).
    """

    rank: int = 16
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: [
        "x_embedder", "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_mlp", "proj_out"])
    k: int = 2
    k_choices: list[int] = field(default_factory=lambda: [1, 2, 4])
    history_dropout: float = 0.1
    caption_dropout: float = 0.1
    num_positions: int = 16
    sequences_per_domain: int | None = None
    cache_dir: str = "data_cache/known_frames"

    def __post_init__(self) -> None:
        if self.sequences_per_domain is not None and self.sequences_per_domain < 1:
            raise ValueError(f"frame_by_frame.sequences_per_domain must be >= 1, got {self.sequences_per_domain}.")
        if not self.k_choices or any(int(k) < 1 for k in self.k_choices) or self.k < 0:
            raise ValueError(f"frame_by_frame.k_choices must be whole numbers >= 1 and k >= 0, got {self.k_choices}, "
                             f"{self.k}.")
        for name in ("history_dropout", "caption_dropout"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise ValueError(f"frame_by_frame.{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.num_positions < 2:
            raise ValueError(f"frame_by_frame.num_positions must be >= 2, got {self.num_positions}.")


@dataclass
class RegionalTrainConfig:
    """The regional LoRA (``procseq train regional``; recorded in ``regional.json`` beside the weights).

    Args:
        rank, alpha, targets: the peft LoRA.
        blend, fusion, ids: the regional settings trained under (as :class:`~procseq.layouts.regional.RegionalConfig`).
        per_domain: training sequences per domain (the first of the split).
        max_tokens_per_step: T5 tokens per step caption.
        cache_dir: where per-frame latents are cached (keyed by what they were computed from).
    """

    rank: int = 16
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: list(CONDITION_TARGETS))
    blend: float = 0.1
    fusion: float = 0.2
    ids: str = "flexible"
    per_domain: int = 300
    max_tokens_per_step: int = 32
    cache_dir: str = "data_cache/regional"


LAYOUT_NAMES = ("grid", "regional", "frame-by-frame")
KNOWN_KINDS = ("none", "last", "first", "neighbours", "sparse")


@dataclass
class LayoutsConfig:
    """The layouts a run trains on (section ``layouts``; DESIGN.md #15), through :mod:`procseq.training.layouts`.

    Args:
        weights: the share of sequences each layout gets (``grid``, ``regional``, ``frame-by-frame``); empty: the
            grid trainer on whole-grid latents (procseq-tiny v1/v2's training).
        known: the shares of the known-frame sets a grid or regional sub-batch draws: ``none``, ``last`` (ReCraft),
            ``first`` (continuation), ``neighbours`` (interpolation), ``sparse``.
        known_mode: how known frames condition in training (``inplace``: their cells clean in the input, no extra
            pass; ``concat``: their own t = 0 pass).
        step_tokens: T5 tokens per step caption, every caption padded to it (recorded as the model's step_tokens);
            None: each caption's own length.
        grid_step_text: the grid reads the step captions after the prompt (False: the prompt alone, as procseq-tiny v2
            was trained, recorded as the model's ``grid_step_text``; regional and frame by frame still read them).
        lora: train this procseq LoRA (``known_frames``, ``regional``, ``frame_by_frame``) on the frozen base
            (its section gives rank, alpha, targets); None: the whole transformer.
        step_embedding: train Loom's step embedding with frame-by-frame batches.
        prompt_dropout: share of sequences whose prompt alone is dropped (their step captions stay), so the frames
            must be read from the captions rather than from the description of the finished thing.
        per_domain: train on the first N sequences of each domain (None: all).
        mix: ``sequence``: every sequence of a batch draws its layout (a step mixes layouts); ``step``: the whole
            batch shares one layout per step.
        cache_dir: where the per-frame latents are cached (keyed by what they were computed from).
        loss_weights: a factor on each layout's loss (default 1 each), independent of its share of sequences: at
            v2's weights frame by frame's and regional's gradients are 100-180x the grid's (BENCHMARKS "What frame by
            frame does to the shared weights"), so a run that must keep the grid may weigh them down.
    """

    weights: dict[str, float] = field(default_factory=dict)
    known: dict[str, float] = field(default_factory=lambda: {"none": 1.0})
    known_mode: str = "inplace"
    step_tokens: int | None = None
    grid_step_text: bool = True
    lora: str | None = None
    step_embedding: bool = True
    prompt_dropout: float = 0.0
    per_domain: int | None = None
    mix: str = "sequence"
    cache_dir: str = "data_cache/frames"
    loss_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = sorted(set(self.loss_weights) - set(LAYOUT_NAMES))
        if bad or any(not 0 <= float(w) < float("inf") for w in self.loss_weights.values()):
            raise ValueError(f"layouts.loss_weights gives factors (finite, >= 0) to {', '.join(LAYOUT_NAMES)}; "
                             f"got {self.loss_weights}.")
        bad = sorted(set(self.weights) - set(LAYOUT_NAMES))
        if bad or any(float(w) < 0 for w in self.weights.values()) or (
                self.weights and sum(float(w) for w in self.weights.values()) <= 0):
            raise ValueError(f"layouts.weights gives shares (>= 0, some positive) to {', '.join(LAYOUT_NAMES)}; "
                             f"got {self.weights}.")
        bad = sorted(set(self.known) - set(KNOWN_KINDS))
        if bad or any(float(w) < 0 for w in self.known.values()) or sum(float(w) for w in self.known.values()) <= 0:
            raise ValueError(f"layouts.known gives shares to {', '.join(KNOWN_KINDS)}; got {self.known}.")
        if self.known_mode not in ("inplace", "concat"):
            raise ValueError(f"layouts.known_mode must be 'inplace' or 'concat', got {self.known_mode!r}.")
        if self.lora not in (None, "known_frames", "regional", "frame_by_frame"):
            raise ValueError(f"layouts.lora must be known_frames, regional or frame_by_frame, got {self.lora!r}.")
        self.cache_dir = os.path.expanduser(self.cache_dir)
        if not 0 <= float(self.prompt_dropout) <= 1:
            raise ValueError(f"layouts.prompt_dropout must be in [0, 1], got {self.prompt_dropout}.")
        if self.mix not in ("sequence", "step"):
            raise ValueError(f"layouts.mix must be 'sequence' or 'step', got {self.mix!r}.")
        if self.step_tokens is not None and self.step_tokens < 1:
            raise ValueError(f"layouts.step_tokens must be >= 1, got {self.step_tokens}.")


@dataclass
class RunConfig:
    """A whole training run: ``procseq train CONFIG.yaml`` reads one of these."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    known_frames: KnownFramesConfig = field(default_factory=KnownFramesConfig)
    frame_by_frame: FrameByFrameConfig = field(default_factory=FrameByFrameConfig)
    regional: RegionalTrainConfig = field(default_factory=RegionalTrainConfig)
    layouts: LayoutsConfig = field(default_factory=LayoutsConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (what :meth:`from_dict` and YAML take)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a nested dict; unknown keys, values of the wrong type and out-of-range numbers raise
        ``ValueError`` naming the key."""
        if not isinstance(d or {}, dict):
            raise ValueError("A config must be a mapping with model/data/optim/train sections.")
        return _build(cls, d or {}, "config").validate()

    def validate(self) -> "RunConfig":
        """Check the ranges of the numbers (steps and sizes >= 1, a positive learning rate...); returns self."""
        at_least = {"train.max_steps": 1, "train.batch_size": 1, "train.grad_accum": 1, "train.checkpoint_every": 1,
                    "train.keep_checkpoints": 1, "train.log_every": 1, "optim.warmup_steps": 0,
                    "optim.weight_decay": 0, "optim.grad_clip": 0, "optim.decay_steps": 0, "optim.min_lr": 0,
                    "autoencoder.steps": 0,
                    "autoencoder.batch_size": 1, "autoencoder.checkpoint_every": 1, "autoencoder.log_every": 1,
                    "autoencoder.max_frames": 1, "autoencoder.crop": 1, "adapter.rank": 1, "known_frames.rank": 1,
                    "frame_by_frame.rank": 1, "regional.rank": 1, "regional.per_domain": 1, "data.num_workers": 0, "data.phrasings": 1}
        for key, low in at_least.items():
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value < low:
                raise ValueError(f"{key} must be >= {low}, got {value}.")
        for key in ("optim.lr", "autoencoder.lr"):
            section, name = key.split(".")
            if not getattr(getattr(self, section), name) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(getattr(self, section), name)}.")
        if self.train.shard == "fsdp" and self.train.grad_accum > 1:
            raise ValueError("train.shard: fsdp takes train.grad_accum: 1; raise train.batch_size or the processes.")
        if not 0 <= self.data.caption_dropout <= 1:
            raise ValueError(f"data.caption_dropout must be in [0, 1], got {self.data.caption_dropout}.")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> "RunConfig":
        """Load a YAML file, or a preset name from :func:`presets`, then apply ``section.key=value`` `overrides`."""
        p = Path(path)
        if not p.is_file():
            preset = PRESET_DIR / f"{path}.yaml"
            if not preset.is_file():
                raise FileNotFoundError(f"No config file {path}; presets: {', '.join(presets()) or 'none'}.")
            p = preset
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{p} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{p} must hold a mapping with model/data/optim/train sections.")
        for item in overrides:
            apply_override(data, item)
        return cls.from_dict(data)

    def save_yaml(self, path: str | Path) -> None:
        """Write the config as YAML."""
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _build(cls: type, d: dict[str, Any], where: str) -> Any:
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in {where}; valid keys: {sorted(valid)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in d.items():
        default = getattr(cls(), name) if name in valid else None
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name} must be a section (a mapping), got {value!r}.")
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, str) and isinstance(value, bool):  # YAML 1.1 reads a bare no/yes/off/on as a bool
            kwargs[name] = "yes" if value else "no"
        else:
            kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type annotation `hint` (ints accepted for floats, '1e-3' strings read
    as floats, as YAML 1.1 leaves them); a ValueError names the key and the expected type."""
    where = where.removeprefix("config.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ValueError as err:
                errors.append(err)
        raise errors[0]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}.")
        return [_coerce(v, args[0], f"{where}[]") if args else v for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}.")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}.")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{where} must be a number, got {value!r}.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}.")
        return value
    return value


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``data[a][b]... = value`` from ``"a.b=value"`` (the value parsed as YAML: 0.5, true, [a, b], null)."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ValueError(f"Bad override {item!r}; use section.key=value, e.g. train.max_steps=500.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ValueError(f"Bad value in override {item!r}: {err}") from err
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"Bad override {item!r}: {part} is not a section.")
    node[parts[-1]] = value


def presets() -> list[str]:
    """Names of the YAML presets shipped with procseq."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
