"""Condition-LoRA training: known sets drawn per batch, the loss on unknown cells only, only the LoRA
trains, the run is reproducible and resumes, caches are keyed by what they were computed from."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FluxPipeline
from safetensors.torch import load_file

from procseq.attention.processors import install_processors
from procseq.layout import GridLayout, frame_token_indices
from procseq.training.config import KnownFramesConfig, RunConfig
from procseq.training.flow_matching import flow_matching_loss
from procseq.training.frame_data import draw_known, group_rows
from procseq.training.known_frames import add_seeded_condition_lora, known_frames_config, lora_meta, prompt_swap
from procseq.conditioning.lora import save_condition_lora
from procseq.training.layouts import FramesDataset, LayoutTrainer, build_layouts


def dataset(n: int = 4) -> FramesDataset:
    """Random latents of 4-frame sequences (16 px frames -> 4x4 latents each), half read with the domain phrase."""
    g = torch.Generator().manual_seed(0)
    rows = [{"num_frames": 4, "prompt": "a red circle", "domain": "painting", "captions": [f"step {k}" for k in range(4)]}
            for _ in range(n)]
    return FramesDataset(rows, {4: torch.randn(n, 4, 4, 4, 4, generator=g)}, prompt_swap(False, False))


def trainer(model_dir, out, mode: str, max_steps: int = 2, subsets=None) -> LayoutTrainer:
    cfg = known_frames_config(RunConfig.from_dict({
        "model": {"path": str(model_dir)},
        "optim": {"name": "adamw", "lr": 1e-2, "warmup_steps": 1},
        "train": {"output_dir": str(out), "max_steps": max_steps, "batch_size": 2, "checkpoint_every": 2,
                  "log_every": 1, "seed": 1},
        "known_frames": {"mode": mode, "rank": 2, "alpha": 2, **({"subsets": subsets} if subsets else {})},
    }))
    pipe = FluxPipeline.from_pretrained(model_dir)
    install_processors(pipe.transformer)
    add_seeded_condition_lora(pipe.transformer, cfg.known_frames, cfg.train.seed)
    lc, kf = cfg.layouts, cfg.known_frames
    return LayoutTrainer(cfg, pipe, dataset(), lambda p, d: save_condition_lora(p.transformer, d, lora_meta(kf)),
                         build_layouts(cfg, None), dict(lc.weights), dict(lc.known), lc.known_mode, lora=lc.lora,
                         condition_lora=mode == "concat", main_lora=mode == "inplace" or kf.main_lora)


@pytest.mark.parametrize("n", [3, 4, 9])
def test_draws_cover_every_kind_and_never_all_or_none(n: int) -> None:
    g = torch.Generator().manual_seed(0)
    draws = [draw_known(n, {"last": 1, "first": 1, "neighbours": 1, "sparse": 1}, g) for _ in range(400)]
    assert all(0 < len(d) < n and list(d) == sorted(set(d)) and all(0 <= k < n for k in d) for d in draws)
    assert (n - 1,) in draws and (0,) in draws and (0, 2) in draws  # last, first k=1, neighbours of 1
    assert all(draw_known(n, {"last": 1}, g) == (n - 1,) for _ in range(5))


def test_config_is_checked() -> None:
    for bad in ({"mode": "x"}, {"subsets": {"middle": 1.0}}, {"subsets": {"last": -1.0}}, {"cut_fraction": 2.0}):
        with pytest.raises(ValueError, match="known_frames"):
            KnownFramesConfig(**bad)


def test_items_carry_their_frames_and_half_the_domain_phrase() -> None:
    items = [dataset(8)[i] for i in range(8)]
    assert all(it["frame_latents"].shape == (4, 4, 4, 4) for it in items)
    prompts = {it["prompt"] for it in items}
    assert prompts == {"a red circle", "a painting"}
    assert group_rows([9, 4, 9, 4, 4]) == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_loss_mask_excludes_the_known_cells(tiny_model_dir, tmp_path, mode) -> None:
    t = trainer(tiny_model_dir, tmp_path, mode, subsets={"neighbours": 1.0})
    (batch, _count), = t.make_batch(0, [0, 1])
    layout = GridLayout.for_frames(4)
    known = batch.known.indices
    assert len(known) == 2 and known[1] - known[0] == 2
    mask = batch.known.loss_mask(layout)
    cells = frame_token_indices(layout, 2)
    assert mask.sum() == 8 and all(not mask[cells[k]].any() for k in known)
    assert batch.known.tokens().shape == (2, 8, 16)
    with torch.no_grad():
        loss = t.batch_loss(batch)
        pred = t.predict(batch)
        assert loss == pytest.approx(flow_matching_loss(pred, batch.x0, batch.noise, mask).item(), rel=1e-5)
        if mode == "inplace":  # known cells' targets and noisy inputs never matter: overwritten and masked
            for k in known:
                batch.x0[:, cells[k]] += 3.0
                batch.noise[:, cells[k]] -= 3.0
            assert t.batch_loss(batch).item() == pytest.approx(loss.item(), rel=1e-5)


@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_only_the_lora_trains_reproducibly_and_resume_continues(tiny_model_dir, tmp_path, mode) -> None:
    base = {k: v.clone() for k, v in FluxPipeline.from_pretrained(tiny_model_dir).transformer.state_dict().items()}
    result = trainer(tiny_model_dir, tmp_path / "a", mode, max_steps=2).train(progress=False)
    assert result.step == 2
    lora = load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)
    assert json.loads((result.model_dir / "known_frames.json").read_text())["mode"] == mode
    t = trainer(tiny_model_dir, tmp_path / "b", mode, max_steps=2)
    twin = t.train(progress=False)  # a second fresh run: the same weights (seeded LoRA init, seeded draws)
    lora_b = load_file(str(twin.model_dir / "pytorch_lora_weights.safetensors"))
    assert all(torch.equal(lora[k], lora_b[k]) for k in lora)
    after = {k.replace(".base_layer", ""): v for k, v in t.pipe.transformer.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], base[k]) for k in base)  # the base model is untouched
    again = trainer(tiny_model_dir, tmp_path / "a", mode, max_steps=3).train(progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert again.step == 3 and steps == [1, 2, 3]


def test_cache_key_follows_corpus_and_vae(tiny_pipe) -> None:
    from procseq.training.frame_data import cache_key

    class Rows:
        def __init__(self, rows):
            self.rows = rows

    a = Rows([{"grid_path": "c/train/0.png", "prompt": "a lego", "num_frames": 9}])
    b = Rows([{"grid_path": "c/train/0.png", "prompt": "a painting", "num_frames": 9}])
    assert cache_key(a, tiny_pipe.vae) == cache_key(a, tiny_pipe.vae)
    assert cache_key(a, tiny_pipe.vae) != cache_key(b, tiny_pipe.vae)
    assert cache_key(a, tiny_pipe.vae) != cache_key(a, tiny_pipe.vae, "cuts")


def test_main_lora_switches_the_lora_on_in_the_main_pass(tiny_model_dir, tmp_path) -> None:
    """main_lora: the same LoRA acts in the main pass too (the prediction moves with it); off: it cannot."""
    preds = {}
    for main in (False, True):
        t = trainer(tiny_model_dir, tmp_path / str(main), "concat", subsets={"last": 1.0})
        t.cfg.known_frames.main_lora = main
        t.main_lora = main
        assert (t.unused_parameters is None) == main
        (batch, _count), = t.make_batch(0, [0, 1])
        with torch.no_grad():
            for n, p in t.pipe.transformer.named_parameters():
                if "lora_B" in n and "single_transformer_blocks" in n and "proj_out" in n:
                    p.fill_(0.5)  # a layer that only the main pass's output can feel
            preds[main] = t.predict(batch)
            for n, p in t.pipe.transformer.named_parameters():
                if "lora_B" in n:
                    p.zero_()
            preds[(main, "zero")] = t.predict(batch)
    assert torch.equal(preds[False], preds[(False, "zero")])  # off in the main pass
    assert not torch.allclose(preds[True], preds[(True, "zero")])  # on in the main pass
    assert lora_meta(KnownFramesConfig(main_lora=True))["main_lora"] is True
