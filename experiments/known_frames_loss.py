"""Masked flow-matching loss of a condition LoRA on training batches of one kind of known set, with the LoRA
and without it (the diagnostic behind docs/history/known-frames-issue-11.md):

    python experiments/known_frames_loss.py LORA_DIR_OR_CHECKPOINT_MODEL_SAFETENSORS last [--main-lora]

Uses the `known_frames` preset's corpus and the cache `procseq train known-frames` built; 3 batches of 16
9-frame sequences (dataset rows 8000-8015), the known set drawn as in training with only KIND weighted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    from safetensors.torch import load_file

    from procseq.attention.processors import adapters_enabled
    from procseq.conditioning.lora import add_condition_lora, load_condition_lora
    from procseq.training.config import RunConfig
    from procseq.training.flow_matching import flow_matching_loss
    from procseq.training.known_frames import KnownFramesDataset, KnownFramesTrainer
    from procseq.training.latents import LatentDataset
    from procseq.training.run import build_pipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lora")
    p.add_argument("kind", choices=["last", "first", "neighbours", "sparse"])
    p.add_argument("--main-lora", action="store_true", help="the LoRA also on the main pass")
    args = p.parse_args()
    cfg = RunConfig.from_yaml("known_frames", [f"known_frames.subsets={{{args.kind}: 1.0}}", "train.batch_size=16",
                                               "data.caption_dropout=0",
                                               f"known_frames.main_lora={str(args.main_lora).lower()}"])
    pipe, _ = build_pipeline(cfg)
    cache = next(Path(cfg.known_frames.cache_dir).iterdir())
    full = LatentDataset.load(cache / "grids.safetensors")
    frames = {int(k.split("_")[1]): v for k, v in load_file(str(cache / "frames.safetensors")).items()}
    if args.lora.endswith(".safetensors"):  # an accelerate checkpoint's model.safetensors (whole transformer)
        add_condition_lora(pipe.transformer, cfg.known_frames.rank, cfg.known_frames.alpha, cfg.known_frames.targets)
        pipe.transformer.load_state_dict(load_file(args.lora), strict=False)
    else:
        load_condition_lora(pipe, args.lora)
    t = KnownFramesTrainer(cfg, pipe, KnownFramesDataset(full, frames), lambda *_: None)
    rows = list(range(8000, 8016))
    with torch.no_grad():
        for step in range(3):
            b = t.make_batch(step, rows)
            with_lora = t.compute_loss(b).item()
            with adapters_enabled(pipe.transformer, False):
                kv = b.known.condition(pipe.transformer, b.layout, t.branch_pooled(), None, lora=False)
                pred = pipe.transformer(**t.model_inputs(b, b.x_t, kv.attention_kwargs("use")))[0]
            without = flow_matching_loss(pred, b.x0, b.noise, b.known.loss_mask(b.layout)).item()
            print(f"batch {step}: known {b.known.indices}  loss with LoRA {with_lora:.4f}  without {without:.4f}")


if __name__ == "__main__":
    main()
