"""The memory-lean training knobs of the FLUX.1-dev presets, on the micro model: gradient checkpointing and
cached text change no loss, and a bfloat16 base trains float32 adapters."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from procseq.data.dataset import make_corpus
from procseq.training.adapters import run_adapter_training
from procseq.training.config import RunConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("lean") / "corpus"
    make_corpus(out, per_domain=1, test_per_domain=1, adapter_sizes={"clay": 4, "sand_art": 4}, progress=False)
    return out


def run(model_dir, corpus, out, **train) -> list[float]:
    data = {"cache_text": train.pop("cache_text", False)}
    cfg = RunConfig.from_dict({
        "model": {"path": str(model_dir), "dtype": train.pop("dtype", "float32")},
        "data": {"dir": str(corpus), "domains": ["clay", "sand_art"], "caption_dropout": 0.3, "cache_latents": True,
                 **data},
        "adapter": {"kind": "asymmetric", "rank": 4},
        "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 1},
        "train": {"output_dir": str(out), "max_steps": 3, "batch_size": 2, "checkpoint_every": 3, "log_every": 1,
                  "seed": 1, **train},
    })
    run_adapter_training(cfg, progress=False)
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_checkpointing_and_cached_text_change_no_loss(tiny_model_dir, corpus, tmp_path) -> None:
    plain = run(tiny_model_dir, corpus, tmp_path / "plain")
    # the routing must survive into the backward, where checkpointing runs each block's forward again
    lean = run(tiny_model_dir, corpus, tmp_path / "lean", gradient_checkpointing=True, cache_text=True)
    assert len(set(plain)) == 3 and lean == pytest.approx(plain, rel=1e-4)


def test_a_bf16_base_trains_float32_adapters(tiny_model_dir, corpus, tmp_path) -> None:
    losses = run(tiny_model_dir, corpus, tmp_path / "bf16", dtype="bfloat16", gradient_checkpointing=True,
                 cache_text=True)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    weights = load_file(str(tmp_path / "bf16" / "model" / "adapters.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_sharding_refuses_a_run_that_trains_more_than_the_transformer(tiny_model_dir, tmp_path) -> None:
    from diffusers import FluxPipeline

    from procseq.training.trainer import Trainer
    from tests.training.test_trainer import RandomGrids

    cfg = RunConfig.from_dict({"model": {"path": str(tiny_model_dir), "train_text_encoders": True},
                               "optim": {"name": "adamw"},
                               "train": {"output_dir": str(tmp_path), "max_steps": 1, "batch_size": 2,
                                         "shard": "fsdp"}})
    trainer = Trainer(cfg, FluxPipeline.from_pretrained(tiny_model_dir), RandomGrids(), lambda p, d: None)
    with pytest.raises(ValueError, match="train.shard: none"):
        trainer.train(progress=False)
