"""The domain as conditioning: a model trained with the domain phrase gets it on every call; v1 models do not."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from procseq.data import dataset as ds
from procseq.domain_prompt import domain_prompts, with_domain


def _frames(pipe, domain: str) -> np.ndarray:
    out = pipe("a red circle", domain=domain, frames=4, generator=torch.Generator("cpu").manual_seed(3))
    return np.asarray(out.grid[0])


def test_with_domain_keeps_the_empty_prompt() -> None:
    assert with_domain("a red star", "lego") == "LEGO building process: a red star"
    assert with_domain("", "lego") == "" and with_domain("x", "wood_work").startswith("wood work process")
    assert domain_prompts(["a", "b"], "painting", False) == ["a", "b"]


def test_domain_decides_the_frames_only_when_the_model_was_trained_so(tiny_pipe, monkeypatch) -> None:
    assert tiny_pipe.defaults.domain_prefix is False  # no flag (the shipped v1 model): the domain is not read
    assert np.array_equal(_frames(tiny_pipe, "painting"), _frames(tiny_pipe, "lego"))
    monkeypatch.setattr(tiny_pipe, "_defaults", dataclasses.replace(tiny_pipe.defaults, domain_prefix=True))
    seen: list[list[str]] = []
    real = tiny_pipe.encode_text
    monkeypatch.setattr(tiny_pipe, "encode_text", lambda p, n: seen.append(list(p)) or real(p, n))
    painting, lego = _frames(tiny_pipe, "painting"), _frames(tiny_pipe, "lego")
    assert not np.array_equal(painting, lego)
    assert seen[0] == ["painting process: a red circle"] and seen[1] == ["LEGO building process: a red circle"]


def test_procseq_json_flag_is_read(tiny_model_dir, tmp_path) -> None:
    from procseq.models.loading import ModelDefaults

    (tmp_path / "procseq.json").write_text(json.dumps({**json.loads((tiny_model_dir / "procseq.json").read_text()),
                                                       "domain_prefix": True}))
    assert ModelDefaults.from_folder(tmp_path).domain_prefix is True
    assert ModelDefaults.from_folder(tiny_model_dir).domain_prefix is False


def test_training_items_carry_the_same_prefix(tmp_path) -> None:
    ds.make_corpus(tmp_path / "c", per_domain=1, test_per_domain=1, adapter_sizes={"clay": 1, "sand_art": 1},
                   progress=False)
    plain = ds.GridDataset(tmp_path / "c", "train", domains=["lego"])
    prefixed = ds.GridDataset(tmp_path / "c", "train", domains=["lego"], domain_prefix=True)
    assert prefixed.rows[0]["prompt"] == with_domain(plain.rows[0]["prompt"], "lego")
    with pytest.raises(ValueError, match="phrasings"):
        ds.GridDataset(tmp_path / "c", "train", phrasings=0)


def test_lora_training_reads_prompts_as_its_base_does(tiny_model_dir, tmp_path) -> None:
    """A LoRA over a base trained with the domain phrase gets the phrase too, without being told (and not otherwise)."""
    import shutil

    from procseq.training.config import DataConfig, ModelConfig, RunConfig
    from procseq.training.known_frames import prompt_swap
    from procseq.training.run import open_corpus, prefix_flag

    ds.make_corpus(tmp_path / "c", per_domain=1, test_per_domain=1, adapter_sizes={"clay": 1, "sand_art": 1},
                   progress=False)
    prefixed = tmp_path / "prefixed"
    shutil.copytree(tiny_model_dir, prefixed)
    meta = json.loads((prefixed / "procseq.json").read_text())
    (prefixed / "procseq.json").write_text(json.dumps({**meta, "domain_prefix": True}))

    def cfg(model, flag=False) -> RunConfig:
        return RunConfig(model=ModelConfig(path=str(model)),
                         data=DataConfig(dir=str(tmp_path / "c"), domains=["lego"], domain_prefix=flag))

    assert not prefix_flag(cfg(tiny_model_dir)) and prefix_flag(cfg(tiny_model_dir, True))
    assert prefix_flag(cfg(prefixed))
    plain_prompt = open_corpus(cfg(tiny_model_dir)).rows[0]["prompt"]
    assert open_corpus(cfg(prefixed)).rows[0]["prompt"] == with_domain(plain_prompt, "lego")
    # the known-frames LoRA's domain-only prompts (ReCraft without a prompt) follow the same rule
    row = {"prompt": "x", "domain": "lego", "num_frames": 4}
    domain_only = {prompt_swap(p, False)(i, row) for p in (False, True) for i in range(8)}
    assert domain_only == {"x", "a LEGO", with_domain("a LEGO", "lego")}


def test_the_step_count_rides_in_the_domain_phrase(tiny_pipe, monkeypatch, tmp_path) -> None:
    """step_count_prefix: "<phrase> process in <n> steps: <prompt>", in training items and in what the pipeline sends."""
    assert with_domain("a red wall", "lego", 9) == "LEGO building process in 9 steps: a red wall"
    assert with_domain("", "lego", 9) == "" and domain_prompts(["a"], "lego", False, 9) == ["a"]
    ds.make_corpus(tmp_path / "c", per_domain=1, test_per_domain=1, adapter_sizes={"clay": 1, "sand_art": 1},
                   progress=False)
    plain = ds.GridDataset(tmp_path / "c", "train", domains=["lego"])
    counted = ds.GridDataset(tmp_path / "c", "train", domains=["lego"], domain_prefix=True, step_count_prefix=True)
    row = plain.rows[0]
    assert counted.prompts[0] == with_domain(row["prompt"], "lego", int(row["num_frames"]))
    with pytest.raises(ValueError, match="domain_prefix"):
        ds.GridDataset(tmp_path / "c", "train", step_count_prefix=True)
    monkeypatch.setattr(tiny_pipe, "_defaults", dataclasses.replace(tiny_pipe.defaults, domain_prefix=True,
                                                                    step_count_prefix=True))
    seen: list[list[str]] = []
    real = tiny_pipe.encode_text
    monkeypatch.setattr(tiny_pipe, "encode_text", lambda p, n: seen.append(list(p)) or real(p, n))
    _frames(tiny_pipe, "lego")
    assert seen[0] == ["LEGO building process in 4 steps: a red circle"]


def test_a_reused_latent_cache_reads_the_prompts_afresh(tiny_pipe, tmp_path) -> None:
    """Switching a prefix on for an existing run must not train on the cached (old) prompts."""
    from procseq.training.latents import cache_latents

    ds.make_corpus(tmp_path / "c", per_domain=1, test_per_domain=1, adapter_sizes={"clay": 1, "sand_art": 1},
                   progress=False)
    plain = ds.GridDataset(tmp_path / "c", "train", domains=["lego", "cooking", "painting"])
    counted = ds.GridDataset(tmp_path / "c", "train", domains=["lego", "cooking", "painting"], domain_prefix=True,
                             step_count_prefix=True)
    first = cache_latents(tiny_pipe.vae, plain, tmp_path / "lat.safetensors", progress=False)
    again = cache_latents(tiny_pipe.vae, counted, tmp_path / "lat.safetensors", progress=False)
    assert torch.equal(first.latents[4], again.latents[4])  # the pixels are reused...
    by_prompt = {p: n for p, n in zip(counted.prompts, counted.num_frames_list)}
    assert sorted(r["prompt"] for r in again.records) == sorted(counted.prompts)  # ...the words are new
    assert all(r["num_frames"] == by_prompt[r["prompt"]] for r in again.records)
