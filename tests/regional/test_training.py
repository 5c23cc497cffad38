"""The regional LoRA: only it trains, it saves in peft naming, and it is on in regional mode only."""

from __future__ import annotations

import copy

import numpy as np
import torch
from diffusers import FluxPipeline
from safetensors.torch import load_file

from procseq.attention.processors import install_processors
from procseq.layouts.regional import RegionalConfig, load_regional_lora
from procseq.conditioning.plan import Plan
from procseq.layout import pack_latents
from procseq.layouts import Regional
from procseq.layouts.base import Draws, LayoutInputs
from procseq.training.config import RunConfig
from procseq.training.layouts import FramesDataset, LayoutTrainer, add_seeded_lora, build_layouts, save_lora_folder

CAPTIONS = ["sketch the outline", "block in flat colour", "add shading", "paint the details"]


def dataset(n: int = 4) -> FramesDataset:
    g = torch.Generator().manual_seed(0)
    rows = [{"num_frames": 4, "prompt": "a red circle", "captions": CAPTIONS, "domain": "painting"} for _ in range(n)]
    return FramesDataset(rows, {4: torch.randn(n, 4, 4, 4, 4, generator=g)})


def test_training_batches_hold_the_frames_as_regions(tiny_pipe) -> None:
    lat = dataset()[1]["frame_latents"][None]  # (1, 4 frames, C, h, w)
    inputs = LayoutInputs(plans=[Plan("a red circle", "painting", CAPTIONS)], prompts=["a red circle"], frames=4,
                          frame_tokens=2, max_sequence_length=16)
    draws = Draws(torch.Generator().manual_seed(0), [torch.Generator().manual_seed(1)], lambda g: 0.5)
    batch = Regional().training_example(tiny_pipe, inputs, lat, draws)
    assert batch.x0.shape == (1, 16, 16) and batch.img_ids.shape == (16, 3)
    assert torch.equal(batch.x0[:, 4:8], pack_latents(lat[:, 1]))  # frame 1 is the second region
    assert "region_mask" in batch.attention


def test_only_the_lora_trains_and_it_is_on_in_regional_mode_only(tiny_model_dir, tiny_pipe, tmp_path) -> None:
    cfg = RunConfig.from_dict({
        "model": {"path": str(tiny_model_dir)}, "optim": {"name": "adamw", "lr": 1e-2, "warmup_steps": 1},
        "train": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 2, "checkpoint_every": 2,
                  "log_every": 1, "seed": 1}})
    cfg.regional.max_tokens_per_step = 16
    pipe = FluxPipeline.from_pretrained(tiny_model_dir)
    install_processors(pipe.transformer)
    add_seeded_lora(pipe.transformer, "regional", 2, 2.0, cfg.regional.targets, 1)
    base = {n: p.detach().clone() for n, p in pipe.transformer.named_parameters() if "lora_" not in n}
    result = LayoutTrainer(cfg, pipe, dataset(), lambda p, d: save_lora_folder(p.transformer, d, "regional", {"rank": 2}),
                           build_layouts(cfg, None), {"regional": 1.0}, lora="regional").train(progress=False)
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
