"""ReCraft training: the loss ignores the final cell, only the LoRA trains, resume continues the run."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FluxPipeline
from safetensors.torch import load_file

from procseq.attention.rope import cell_token_mask
from procseq.layout import GridLayout, frame_token_indices
from procseq.training.config import RunConfig
from procseq.training.flow_matching import flow_matching_loss
from procseq.training.latents import LatentDataset
from procseq.training.recraft import (
    RecraftDataset,
    RecraftTrainer,
    add_recraft_lora,
    save_recraft_lora,
)


def dataset(n: int = 4) -> RecraftDataset:
    """Random cached latents of 4-frame grids (16 px frames -> 8x8 latents) and final frames (4x4)."""
    g = torch.Generator().manual_seed(0)
    records = [{"row": i, "num_frames": 4, "prompt": "a red circle", "domain": "painting"} for i in range(n)]
    grids = LatentDataset({4: torch.randn(n, 4, 8, 8, generator=g)}, records)
    return RecraftDataset(grids, {4: torch.randn(n, 4, 4, 4, generator=g)})


def trainer(model_dir, out, mode: str, max_steps: int = 2) -> RecraftTrainer:
    cfg = RunConfig.from_dict({
        "model": {"path": str(model_dir)},
        "optim": {"name": "adamw", "lr": 1e-2, "warmup_steps": 1},
        "train": {"output_dir": str(out), "max_steps": max_steps, "batch_size": 2, "checkpoint_every": 2,
                  "log_every": 1, "seed": 1},
        "recraft": {"mode": mode, "rank": 2, "alpha": 2},
    })
    pipe = FluxPipeline.from_pretrained(model_dir)
    add_recraft_lora(pipe.transformer, cfg.recraft)
    return RecraftTrainer(cfg, pipe, dataset(), lambda p, d: save_recraft_lora(p.transformer, d, cfg.recraft))


def test_items_carry_the_final_frame_and_the_domain_prompt() -> None:
    item = dataset()[1]
    assert item["cond_latents"].shape == (4, 4, 4) and item["prompt"] == "a painting"


@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_loss_mask_excludes_the_final_cell(tiny_model_dir, tmp_path, mode) -> None:
    t = trainer(tiny_model_dir, tmp_path, mode)
    batch = t.make_batch(0, [0, 1])
    final = frame_token_indices(GridLayout.for_frames(4), 2)[-1]
    assert not batch.loss_mask[final].any() and batch.loss_mask.sum() == 12
    assert torch.equal(batch.loss_mask, ~cell_token_mask(GridLayout.for_frames(4), 2))
    assert batch.cond.shape == (2, 4, 16)
    with torch.no_grad():
        loss = t.compute_loss(batch)
        pred = t.predict(batch)
        assert loss == pytest.approx(flow_matching_loss(pred, batch.x0, batch.noise, batch.loss_mask).item())
        if mode == "inplace":  # the final cell's target and noisy input never matter: overwritten and masked
            batch.x0[:, final] += 3.0
            batch.noise[:, final] -= 3.0
            assert t.compute_loss(batch).item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_only_the_lora_trains_and_resume_continues(tiny_model_dir, tmp_path, mode) -> None:
    base = {k: v.clone() for k, v in FluxPipeline.from_pretrained(tiny_model_dir).transformer.state_dict().items()}
    t = trainer(tiny_model_dir, tmp_path, mode, max_steps=2)
    result = t.train(progress=False)
    assert result.step == 2
    after = {k.replace(".base_layer", ""): v for k, v in t.pipe.transformer.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], base[k]) for k in base)  # the base model is untouched
    lora = load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)
    assert json.loads((result.model_dir / "recraft.json").read_text())["mode"] == mode
    again = trainer(tiny_model_dir, tmp_path, mode, max_steps=3).train(progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert again.step == 3 and steps == [1, 2, 3]
