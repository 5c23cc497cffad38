"""``procseq train CONFIG``: build or load the model, the corpus dataset and the trainer, then run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from procseq.distributed import process_state
from procseq.models.pipeline_index import mark_procseq_folder
from procseq.models.tiny import PROCSEQ_CONFIG, TinyConfig, build_components, procseq_metadata
from procseq.training.checkpoints import output_lock
from procseq.training.config import RunConfig
from procseq.training.trainer import Trainer, TrainResult


def corpus_texts(per_domain: int = 200, seed: int = 0) -> list[str]:
    """Prompts and captions of every synthetic domain: the vocabulary the tiny tokenizers are trained on."""
    from procseq.data.synthetic.base import REGISTRY, generate

    texts: list[str] = []
    for name in sorted(REGISTRY):
        for split in ("train", "test-compositional"):
            for i in range(per_domain // 2):
                spec, _ = generate(name, seed * 1_000_000 + i, split=split)
                texts += [spec.prompt, *spec.captions]
    return texts


def split_texts(data_dir: str | Path, split: str = "train", domains: list[str] | None = None) -> list[str]:
    """Every prompt, stored phrasing and step caption of a corpus split, and the domain phrases: the
    vocabulary the tiny tokenizers of a v2 model are trained on (``model.tokenizer_texts: corpus``), so
    no word of a held-out wording (``test-paraphrase``) is a token of its own."""
    from procseq.data.dataset import load_split
    from procseq.domain_prompt import with_domain

    rows = [r for r in load_split(data_dir, split) if domains is None or r["domain"] in domains]
    texts = [t for r in rows for t in [*(r.get("prompts") or [r["prompt"]]), *r["captions"]]]
    return texts + [with_domain(r["prompt"], r["domain"]) for r in rows]  # the domain phrases, in context


def all_domain_texts(data_dir: str | Path, split: str = "train") -> list[str]:
    """The vocabulary of ``model.tokenizer_texts: all-domains``: every training domain's text (base and adapter
    domains, every train-pool phrasing, step captions; :func:`procseq.data.texts.domain_texts`), plus the stored
    text of every domain of the corpus split when it exists (:func:`split_texts`). Never a test-pool word."""
    from procseq.data.texts import domain_texts

    texts = domain_texts()
    if (Path(data_dir) / split / "metadata.jsonl").is_file():
        texts += split_texts(data_dir, split, domains=None)
    return texts


def tokenizer_texts(cfg: RunConfig) -> list[str]:
    """The texts a from-scratch run's tokenizers are built from, as ``model.tokenizer_texts`` says: ``synthetic``
    (v1: template text of every domain), ``corpus`` (v2: the training split of ``data.domains``) or
    ``all-domains`` (v3: :func:`all_domain_texts`)."""
    kind = cfg.model.tokenizer_texts
    if kind == "synthetic":
        return corpus_texts()
    if kind == "all-domains":
        return all_domain_texts(cfg.data.dir, cfg.data.split)
    return split_texts(cfg.data.dir, cfg.data.split, cfg.data.domains)


def run_tokenizers(cfg: RunConfig, tiny: TinyConfig) -> tuple[Any, Any]:
    """The tokenizers of a from-scratch run: built on its first start and kept in ``output_dir/tokenizers``,
    read back on every later start (a resume) and by every process, so the text encoders always see the
    vocabulary they were trained with (the BPE trainer breaks ties differently in every process)."""
    from transformers import CLIPTokenizer, T5Tokenizer

    from procseq.models.tiny import build_tokenizers
    from procseq.outputs import atomic_dir

    folder = Path(cfg.train.output_dir) / "tokenizers"
    with process_state().main_process_first():
        if not (folder / "clip").is_dir():
            clip, t5 = build_tokenizers(tiny, tokenizer_texts(cfg))
            with atomic_dir(folder) as tmp:
                clip.save_pretrained(tmp / "clip")
                t5.save_pretrained(tmp / "t5")
        return CLIPTokenizer.from_pretrained(folder / "clip"), T5Tokenizer.from_pretrained(folder / "t5")


def _save_pipeline(metadata: dict[str, Any]):
    def save(pipe: Any, out: Path) -> None:
        from diffusers import FluxPipeline

        FluxPipeline(
            scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
            text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2, transformer=pipe.transformer,
        ).save_pretrained(out, safe_serialization=True)
        (Path(out) / PROCSEQ_CONFIG).write_text(json.dumps(metadata, indent=2) + "\n")
        mark_procseq_folder(out)

    return save


def build_pipeline(cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    """The pipeline to train and the ``procseq.json`` metadata its saved folder gets."""
    from diffusers import FluxPipeline

    if cfg.model.path:
        from procseq.models.loading import resolve_model

        path = Path(resolve_model(cfg.model.path))
        pipe = FluxPipeline.from_pretrained(str(path), dtype=getattr(torch, cfg.model.dtype))
        meta_file = path / PROCSEQ_CONFIG
        metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    else:
        tiny = TinyConfig(**cfg.model.tiny)
        tokenizers = run_tokenizers(cfg, tiny)
        pipe = FluxPipeline(**build_components(tiny, (), seed=cfg.train.seed, tokenizers=tokenizers))
        pipe.to(getattr(torch, cfg.model.dtype))
        metadata = procseq_metadata(tiny)
    if cfg.data.domains:
        metadata["domains"] = list(cfg.data.domains)
    if cfg.data.domain_prefix:
        metadata["domain_prefix"] = True
    if cfg.data.step_count_prefix:
        metadata["step_count_prefix"] = True
    return pipe, metadata


def corpus_frames(dataset: Any, max_frames: int, seed: int) -> torch.Tensor:
    """Up to `max_frames` individual frames ``(N, 3, S, S)`` cut from random grids of `dataset`."""
    from procseq.layout import GridLayout, grid_tensor_to_frames

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    frames: list[torch.Tensor] = []
    for i in order:
        item = dataset[i]
        frames.extend(grid_tensor_to_frames(item["grid"], GridLayout.for_frames(item["num_frames"])))
        if len(frames) >= max_frames:
            break
    return torch.stack(frames[:max_frames])


def prefix_flag(cfg: RunConfig, key: str = "domain_prefix") -> bool:
    """Whether training prompts get the domain phrase (`key` ``domain_prefix``) or the step count in it
    (``step_count_prefix``; :mod:`procseq.domain_prompt`): ``data.<key>``, or the base's own flag, so a LoRA
    over a base trained with the phrase reads prompts as that base does."""
    if getattr(cfg.data, key) or not cfg.model.path:
        return bool(getattr(cfg.data, key))
    from procseq.models.loading import resolve_model

    meta = Path(resolve_model(cfg.model.path)) / PROCSEQ_CONFIG
    return bool(meta.is_file() and json.loads(meta.read_text()).get(key))


def open_corpus(cfg: RunConfig) -> Any:
    """The training split ``cfg.data`` names, as a GridDataset; a clear error when it is missing or empty."""
    from procseq.data.dataset import GridDataset

    data_dir = Path(cfg.data.dir)
    if not (data_dir / cfg.data.split).is_dir():
        raise FileNotFoundError(
            f"No {cfg.data.split!r} split in {data_dir}; make the corpus first: procseq data make --out {data_dir}")
    dataset = GridDataset(data_dir, cfg.data.split, domains=cfg.data.domains, phrasings=cfg.data.phrasings,
                          domain_prefix=prefix_flag(cfg),
                          step_count_prefix=prefix_flag(cfg, "step_count_prefix"))
    if len(dataset) == 0:
        raise ValueError(f"No sequences of domains {cfg.data.domains} in {data_dir}/{cfg.data.split}.")
    return dataset


def require_base_model(cfg: RunConfig, what: str) -> None:
    """Raise unless ``model.path`` names the frozen base that `what` (e.g. "An adapter") is trained on."""
    if not cfg.model.path:
        raise ValueError(f"{what} needs a base model: set model.path (e.g. procseq-tiny or a Flux folder).")


def run_training(cfg: RunConfig, progress: bool = True) -> TrainResult:
    """Train as `cfg` says, each stage resumable from ``cfg.train.output_dir``:

    1. the autoencoder on corpus frames (when ``autoencoder.steps > 0``),
    2. the latent cache of every training grid (when ``data.cache_latents``),
    3. the transformer (and text encoders when ``model.train_text_encoders``) with flow matching.
    """
    from procseq.training.autoencoder import train_autoencoder
    from procseq.training.latents import cache_latents

    dataset: Any = open_corpus(cfg)
    pipe, metadata = build_pipeline(cfg)
    if not metadata.get("domains"):
        metadata["domains"] = sorted(set(dataset.domains))
    out = Path(cfg.train.output_dir)
    trainer_main = int(os.environ.get("RANK", "0")) == 0  # accelerate launch: one lock, held by rank 0
    with output_lock(out, trainer_main):
        with process_state().main_process_first():  # many processes: the first writes, the others read
            if cfg.autoencoder.steps > 0:
                frames = corpus_frames(dataset, cfg.autoencoder.max_frames, cfg.autoencoder.seed)
                pipe.vae = train_autoencoder(pipe.vae, frames, cfg.autoencoder, out / "autoencoder", progress)
                del frames
            if cfg.data.cache_latents:
                dataset = cache_latents(pipe.vae, dataset, out / "latents.safetensors", progress=progress)
        result = Trainer(cfg, pipe, dataset, _save_pipeline(metadata)).train(progress=progress)
        write_training_record(out, result.model_dir)
    return result


def write_training_record(run_dir: Path, model_dir: Path) -> Path:
    """Copy the config and logs of a run into ``model_dir/training/`` and draw ``loss.png`` there
    (on the main process only)."""
    from procseq.outputs import write_bytes_atomic
    from procseq.training.curves import plot_curves, read_log

    record = Path(model_dir) / "training"
    if not process_state().is_main_process:
        return record
    record.mkdir(parents=True, exist_ok=True)
    curves = {}
    for name, src in (("config.yaml", run_dir / "config.yaml"), ("log.jsonl", run_dir / "log.jsonl"),
                      ("autoencoder_log.jsonl", run_dir / "autoencoder" / "log.jsonl")):
        if src.is_file():
            write_bytes_atomic(record / name, src.read_bytes())
    if (record / "log.jsonl").is_file():
        curves["training loss (log.jsonl)"] = read_log(record / "log.jsonl")
    if (record / "autoencoder_log.jsonl").is_file():
        curves["autoencoder: L1 + MSE (+KL) loss"] = read_log(record / "autoencoder_log.jsonl")
    if curves:
        plot_curves(curves, record / "loss.png")
    return record
