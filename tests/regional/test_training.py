"""The regional LoRA: only it trains, it saves in peft naming, and it is on in regional mode only."""

from __future__ import annotations

import copy

import numpy as np
import torch
from diffusers import FluxPipeline
from safetensors.torch import load_file

from procseq.attention.processors import install_processors
from procseq.layouts.regional import RegionalConfig, load_regional_lora
from procseq.training.config import RunConfig
from procseq.training.regional import RegionalDataset, RegionalTrainConfig, RegionalTrainer, add_regional_lora
from procseq.conditioning.lora import save_condition_lora

CAPTIONS = ["sketch the outline", "block in flat colour", "add shading", "paint the details"]


def dataset(n: int = 4) -> RegionalDataset:
    g = torch.Generator().manual_seed(0)
    rows = [{"num_frames": 4, "prompt": "a red circle", "captions": CAPTIONS, "domain": "painting"} for _ in range(n)]
    return RegionalDataset(rows, {4: torch.randn(n, 4, 4, 4, 4, generator=g)})


def test_dataset_stacks_the_frames_as_regions() -> None:
    data = dataset()
    item = data[1]
    assert item["latents"].shape == (4, 16, 4) and item["num_frames"] == 4
    assert torch.equal(item["latents"][:, 4:8], data.frame_latents[4][1, 1])  # frame 1 is the second region


def test_only_the_lora_trains_and_it_is_on_in_regional_mode_only(tiny_model_dir, tiny_pipe, tmp_path) -> None:
    cfg = RunConfig.from_dict({
        "model": {"path": str(tiny_model_dir)}, "optim": {"name": "adamw", "lr": 1e-2, "warmup_steps": 1},
        "train": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 2, "checkpoint_every": 2,
                  "log_every": 1, "seed": 1}})
    rc = RegionalTrainConfig(rank=2, alpha=2, max_tokens_per_step=16)
    pipe = FluxPipeline.from_pretrained(tiny_model_dir)
    install_processors(pipe.transformer)
    add_regional_lora(pipe.transformer, rc, 1)
    base = {n: p.detach().clone() for n, p in pipe.transformer.named_parameters() if "lora_" not in n}
    result = RegionalTrainer(cfg, pipe, dataset(), lambda p, d: save_condition_lora(
        p.transformer, d, {"rank": 2}, adapter_name="regional", meta_name="regional.json"), rc).train(progress=False)
    assert result.step == 2 and np.isfinite(result.loss)
    assert all(torch.equal(p, base[n]) for n, p in pipe.transformer.named_parameters() if n in base)
    keys = load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)

    user = copy.deepcopy(tiny_pipe)

    def run(mode: str, **kw):
        return np.asarray(user("a red circle", domain="painting", frames=4, num_inference_steps=2, mode=mode,
                               captions=CAPTIONS, generator=torch.Generator().manual_seed(0), **kw).grid[0])

    grid_before, free = run("grid"), run("regional")
    load_regional_lora(user, result.model_dir)
    assert np.array_equal(run("grid"), grid_before)  # grid mode never sees it
    trained = run("regional")
    assert not np.array_equal(trained, free)
    assert np.array_equal(run("regional", regional=RegionalConfig(lora=False)), free)  # training-free again
