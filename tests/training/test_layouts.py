"""The one trainer over the layout objects: mixed-layout batches, known frames, exact resume, LoRA or whole model."""

from __future__ import annotations

import json

import torch
from diffusers import FluxPipeline

from procseq.attention.processors import install_processors
from procseq.conditioning.history import StepEmbedding
from procseq.training.config import RunConfig
from procseq.training.layouts import FramesDataset, LayoutTrainer, add_seeded_lora, build_layouts

WEIGHTS = {"grid": 1.0, "regional": 1.0, "frame-by-frame": 1.0}


def make_trainer(model_dir, out, max_steps: int = 3, lora: str | None = None, seed: int = 1,
                 known: dict | None = None, grid_step_text: bool = True,
                 grids: torch.Tensor | None = None, loss_weights: dict | None = None) -> LayoutTrainer:
    cfg = RunConfig.from_dict({
        "model": {"path": str(model_dir)},
        "data": {"caption_dropout": 0.2},
        "optim": {"name": "adamw", "lr": 1e-3, "warmup_steps": 1},
        "train": {"output_dir": str(out), "max_steps": max_steps, "batch_size": 4, "checkpoint_every": 2,
                  "log_every": 1, "seed": seed},
        "frame_by_frame": {"k_choices": [1, 2], "num_positions": 4},
        "layouts": {"weights": WEIGHTS, "step_tokens": 6, "lora": lora, "grid_step_text": grid_step_text,
                    "loss_weights": loss_weights or {}},
    })
    pipe = FluxPipeline.from_pretrained(model_dir)
    install_processors(pipe.transformer)
    if lora:
        add_seeded_lora(pipe.transformer, lora, 2, 2.0, cfg.regional.targets, seed)
    emb = StepEmbedding(pipe.transformer.config.in_channels, 4)
    rows = [{"prompt": f"a blue lego tower {i}", "captions": [f"place brick {j}" for j in range(5)], "domain": "lego",
             "num_frames": 5} for i in range(8)]
    data = FramesDataset(rows, {5: torch.randn(8, 5, 4, 4, 4, generator=torch.Generator().manual_seed(0))},
                         grid_latents=None if grids is None else {5: grids})
    return LayoutTrainer(cfg, pipe, data, lambda p, d: d.mkdir(parents=True, exist_ok=True), build_layouts(cfg, emb),
                         WEIGHTS, known or {"none": 1.0, "last": 1.0, "neighbours": 1.0}, "inplace", 6, lora, emb)


def test_batches_mix_layouts_and_known_sets_deterministically(tiny_model_dir, tmp_path) -> None:
    tr = make_trainer(tiny_model_dir, tmp_path / "run")
    seen_layouts, seen_known = set(), set()
    for step in range(12):
        parts = tr.make_batch(step, list(range(4)))
        assert sum(count for _b, count in parts) == 4
        again = tr.make_batch(step, list(range(4)))
        for (a, _), (b, _) in zip(parts, again):
            assert a.layout == b.layout and torch.equal(a.x_t, b.x_t) and torch.equal(a.t, b.t)
        for batch, count in parts:
            seen_layouts.add(batch.layout)
            assert batch.x0.shape[0] == count and torch.isfinite(batch.x_t).all()
            if batch.known is not None and batch.layout != "frame-by-frame":
                seen_known.add(batch.known.indices)
                assert batch.loss_mask is not None and not batch.loss_mask.all()
        if len(parts) > 1:
            seen_layouts.add("mixed")
    assert {"grid", "regional", "frame-by-frame", "mixed"} <= seen_layouts  # one step holds several layouts
    assert (4,) in seen_known  # ReCraft's last cell
    assert any(len(k) == 2 and k[1] - k[0] == 2 for k in seen_known)  # interpolation's two neighbours


def test_the_grid_trains_on_the_whole_grid_encoding_and_regional_on_frames(tiny_model_dir, tmp_path) -> None:
    """The grid decodes as one image, so its target is the grid's own encoding (a 5-frame grid is 2 x 3 cells of
    4 x 4 latents); regional decodes frame by frame, so its target is the frames encoded alone; known cells hold the
    frames' own encodings in both (as sampling encodes known frames)."""
    from procseq.layout import frames_to_grid_tensor, pack_latents

    grids = torch.randn(8, 4, 8, 12, generator=torch.Generator().manual_seed(3))
    tr = make_trainer(tiny_model_dir, tmp_path / "run", grids=grids, known={"none": 1.0, "last": 1.0})
    frames = tr.dataset.frame_latents[5]
    seen = set()
    for step in range(12):
        for batch, count in tr.make_batch(step, list(range(4))):
            if batch.layout == "frame-by-frame":
                continue
            seen.add((batch.layout, batch.known is not None))
            rows = [r for r in range(4) if any(torch.equal(batch.x0[i], pack_latents(grids[r:r + 1])[0])
                                                for i in range(count))]
            if batch.layout == "grid":
                assert len(rows) == count  # every grid's x0 is one of the whole-grid encodings
            else:
                assert not rows
            if batch.known is not None:
                cells = batch.known_cells
                idx = batch.known.token_index(cells)
                known = pack_latents(torch.stack([frames_to_grid_tensor(f, cells, fill=0.0) for f in frames[:4]]))
                assert any(torch.equal(batch.x_t[0, idx], known[r, idx]) for r in range(4))
    assert {("grid", False), ("grid", True), ("regional", False)} <= seen


def test_loss_weights_scale_each_layouts_loss(tiny_model_dir, tmp_path) -> None:
    import pytest

    plain = make_trainer(tiny_model_dir, tmp_path / "a")
    weighted = make_trainer(tiny_model_dir, tmp_path / "b", loss_weights={"frame-by-frame": 0.25, "grid": 0.0})
    factors = {"frame-by-frame": 0.25, "grid": 0.0, "regional": 1.0}
    with torch.no_grad():
        for step in range(4):
            parts = plain.make_batch(step, list(range(4)))
            want = sum(plain.batch_loss(b) * n * factors[b.layout] for b, n in parts) / 4
            assert torch.allclose(weighted.loss_at(step, list(range(4))), want)
            assert torch.allclose(plain.loss_at(step, list(range(4))), sum(plain.batch_loss(b) * n for b, n in parts) / 4)
    with pytest.raises(ValueError, match="loss_weights"):
        RunConfig.from_dict({"layouts": {"weights": WEIGHTS, "loss_weights": {"grid": -1.0}}})
    with pytest.raises(ValueError, match="loss_weights"):
        RunConfig.from_dict({"layouts": {"weights": WEIGHTS, "loss_weights": {"grids": 1.0}}})


def test_a_sequence_draws_the_same_whatever_else_is_in_its_batch(tiny_model_dir, tmp_path) -> None:
    """Per-sequence draws come from its place in the global batch: process 1 of 2 sees exactly rows 1 and 3."""
    tr = make_trainer(tiny_model_dir, tmp_path / "run")
    rows = [tr.item_generator(5, r) for r in (1, 3)]
    other = make_trainer(tiny_model_dir, tmp_path / "run2")
    assert all(torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
               for a, b in zip(rows, [other.item_generator(5, r) for r in (1, 3)]))


def test_whole_model_training_resumes_exactly(tiny_model_dir, tmp_path) -> None:
    straight = make_trainer(tiny_model_dir, tmp_path / "a", max_steps=4).train(progress=False)
    make_trainer(tiny_model_dir, tmp_path / "b", max_steps=2).train(progress=False)
    resumed = make_trainer(tiny_model_dir, tmp_path / "b", max_steps=4).train(progress=False)
    log = lambda run: [json.loads(x)["loss"] for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert resumed.step == straight.step == 4 and torch.isfinite(torch.tensor(straight.loss))
    assert log("a") == log("b")


def test_lora_training_moves_only_the_lora_and_the_step_embedding(tiny_model_dir, tmp_path) -> None:
    tr = make_trainer(tiny_model_dir, tmp_path / "run", max_steps=3, lora="regional")
    base = {n: p.clone() for n, p in tr.pipe.transformer.named_parameters() if "lora_" not in n}
    lora = {n: p.clone() for n, p in tr.pipe.transformer.named_parameters() if "lora_B" in n}
    result = tr.train(progress=False)
    assert result.step == 3
    assert all(torch.equal(p, base[n]) for n, p in tr.pipe.transformer.named_parameters() if "lora_" not in n)
    assert any(not torch.equal(p, lora[n]) for n, p in tr.pipe.transformer.named_parameters() if "lora_B" in n)
    assert tr.embedding is not None and tr.embedding.table.abs().sum() > 0


def test_prompt_dropout_keeps_the_step_captions(tiny_model_dir, tmp_path) -> None:
    """layouts.prompt_dropout drops the prompt alone: the frames' text still holds the captions; off, nothing moves."""
    tr = make_trainer(tiny_model_dir, tmp_path / "run")
    tr.cfg.layouts.prompt_dropout = 1.0
    tr.cfg.data.caption_dropout = 0.0
    empty_prompt = tr.text.encode_text([""]).prompt_embeds
    for batch, _ in tr.make_batch(0, list(range(4))):
        width = empty_prompt.shape[1]
        assert torch.equal(batch.text.prompt_embeds[:, :width], empty_prompt.expand(batch.x0.shape[0], -1, -1))
        assert batch.text.prompt_embeds.shape[1] > width  # the captions follow
    tr.cfg.layouts.prompt_dropout = 0.0
    plain = tr.make_batch(3, list(range(4)))
    again = make_trainer(tiny_model_dir, tmp_path / "run2").make_batch(3, list(range(4)))
    assert all(torch.equal(a.x_t, b.x_t) and torch.equal(a.text.prompt_embeds, b.text.prompt_embeds)
               for (a, _), (b, _) in zip(plain, again))


def test_a_grid_trained_on_the_prompt_alone_reads_no_captions(tiny_model_dir, tmp_path) -> None:
    """``layouts.grid_step_text: false``: grid batches carry the prompt's tokens only, the other layouts the captions."""
    lengths = {}
    for flag in (True, False):
        tr = make_trainer(tiny_model_dir, tmp_path / f"run-{flag}", grid_step_text=flag)
        for step in range(12):
            for batch, _count in tr.make_batch(step, list(range(4))):
                lengths.setdefault((flag, batch.layout), set()).add(batch.text.prompt_embeds.shape[1])
    assert max(lengths[(False, "grid")]) + 5 * 6 == min(lengths[(True, "grid")])  # 5 captions of 6 tokens
    assert lengths[(False, "regional")] == lengths[(True, "regional")]
