"""Frame-by-frame training: only the LoRA and the step embedding learn, the rotation offset covers every
history position, the saved folder loads into the pipeline (and its LoRA into stock diffusers)."""

from __future__ import annotations

import torch
from diffusers import FluxPipeline
from safetensors.torch import load_file

from procseq.attention.processors import install_processors
from procseq.conditioning.history import StepEmbedding, history_indices, offset_bound
from procseq.layouts import frame_by_frame as fbf
from procseq.conditioning.plan import Plan
from procseq.training.config import RunConfig
from procseq.training.layouts import FramesDataset, LayoutTrainer, add_seeded_lora, build_layouts, save_lora_folder


def make_trainer(model_dir, out, max_steps: int = 3) -> LayoutTrainer:
    cfg = RunConfig.from_dict({
        "model": {"path": str(model_dir)},
        "optim": {"name": "adamw", "lr": 1e-2, "warmup_steps": 1},
        "train": {"output_dir": str(out), "max_steps": max_steps, "batch_size": 2, "checkpoint_every": 3,
                  "log_every": 1, "seed": 1},
        "frame_by_frame": {"rank": 2, "alpha": 2, "k_choices": [1, 2, 4], "num_positions": 4},
    })
    pipe = FluxPipeline.from_pretrained(model_dir)
    install_processors(pipe.transformer)
    add_seeded_lora(pipe.transformer, fbf.ADAPTER_NAME, 2, 2.0, cfg.frame_by_frame.targets, 1)
    emb = StepEmbedding(pipe.transformer.config.in_channels, 4)
    rows = [{"prompt": "a blue lego tower", "captions": [f"place brick {i}" for i in range(6)], "domain": "lego",
             "num_frames": 6} for _ in range(4)]
    data = FramesDataset(rows, {6: torch.randn(4, 6, 4, 4, 4, generator=torch.Generator().manual_seed(0))})
    meta = {"k": 2, "num_positions": 4}
    return LayoutTrainer(cfg, pipe, data, lambda p, d: save_lora_folder(p.transformer, d, fbf.ADAPTER_NAME, meta, emb),
                         build_layouts(cfg, emb), {"frame-by-frame": 1.0}, lora=fbf.ADAPTER_NAME, embedding=emb)


def test_batches_cover_every_reachable_history_position(tiny_model_dir, tmp_path) -> None:
    tr = make_trainer(tiny_model_dir, tmp_path / "run")
    seen: dict[int, set[int]] = {}
    for step in range(150):
        (b, count), = tr.make_batch(step, [0, 1])
        frame, history = b.info["frame"], b.info["history"]
        assert count == 2 and all(0 <= i < frame for i in history) and list(history) == sorted(set(history))
        assert b.x0.shape == (2, 4, 16) and b.img_ids.shape == (4, 3)
        if history:
            assert b.known is not None and b.known.latents.shape == (2, len(history), 4, 4, 4)
        seen.setdefault(frame, set()).update(history)
    # Loom's rotation offset (0 <= o < offset_bound(t, K)) reaches every index its sparse sampling can give, no other
    reachable = {t: {i for k in (1, 2, 4) for o in range(offset_bound(t, k)) for i in history_indices(t, k, o)}
                 for t in range(2, 6)}
    assert all(seen.get(t) == reachable[t] for t in range(2, 6))


def test_training_moves_only_lora_and_embedding_and_loads(tiny_model_dir, tmp_path) -> None:
    from procseq.pipelines.loading import load_pipeline

    tiny_pipe = load_pipeline(tiny_model_dir, device="cpu")  # its own: peft layers stay after an adapter is deleted
    tiny_pipe.set_progress_bar_config(disable=True)
    tr = make_trainer(tiny_model_dir, tmp_path / "run")
    base = {n: p.clone() for n, p in tr.pipe.transformer.named_parameters() if "lora_" not in n}
    result = tr.train(progress=False)
    assert result.step == 3 and torch.isfinite(torch.tensor(result.loss))
    assert all(torch.equal(p, base[n]) for n, p in tr.pipe.transformer.named_parameters() if "lora_" not in n)
    assert tr.embedding.table.abs().sum() > 0
    folder = result.model_dir
    keys = load_file(str(folder / "pytorch_lora_weights.safetensors"))
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    stock = FluxPipeline.from_pretrained(tiny_model_dir)
    stock.load_lora_weights(folder / "pytorch_lora_weights.safetensors")  # a plain diffusers LoRA
    # into the procseq pipeline: active in frame-by-frame mode only, grid mode unchanged
    grid_before = tiny_pipe("a tower", domain="lego", frames=4, num_inference_steps=1,
                            generator=torch.Generator().manual_seed(0)).grid[0].tobytes()
    plan = Plan("a blue lego tower", "lego", [f"place brick {i}" for i in range(5)])
    plain = tiny_pipe(plan=plan, num_inference_steps=1, mode="frame-by-frame",
                      generator=torch.Generator().manual_seed(0))
    out = tiny_pipe(plan=plan, num_inference_steps=1, mode="frame-by-frame",
                    frame_by_frame=fbf.FrameByFrameOptions(weights=str(folder)),
                    generator=torch.Generator().manual_seed(0))
    grid_after = tiny_pipe("a tower", domain="lego", frames=4, num_inference_steps=1,
                           generator=torch.Generator().manual_seed(0)).grid[0].tobytes()
    assert out.metadata[0]["frame_by_frame_weights"] == str(folder) and out.metadata[0]["step_embedding"]
    assert out.grid[0].tobytes() != plain.grid[0].tobytes()
    assert grid_after == grid_before
