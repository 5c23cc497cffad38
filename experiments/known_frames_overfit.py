"""Overfit one batch of last-cell ReCraft training with the known-frames trainer (40 AdamW steps, lr 1e-3):
the check that its loop learns (docs/history/known-frames-issue-11.md). Run from the repository root after
`procseq train known-frames` has built its caches:  python experiments/known_frames_overfit.py
"""
import torch
from pathlib import Path
from safetensors.torch import load_file
from procseq.training.config import RunConfig
from procseq.training.known_frames import KnownFramesDataset, KnownFramesTrainer, add_seeded_condition_lora
from procseq.training.run import build_pipeline
from procseq.training.latents import LatentDataset
cfg = RunConfig.from_yaml("known_frames", ["known_frames.subsets={last: 1.0}", "train.batch_size=16", "data.caption_dropout=0"])
pipe, _ = build_pipeline(cfg)
d = next(Path('data_cache/known_frames').iterdir())
full = LatentDataset.load(d/'grids.safetensors')
frames = {int(k.split('_')[1]): v for k, v in load_file(str(d/'frames.safetensors')).items()}
add_seeded_condition_lora(pipe.transformer, cfg.known_frames, 0)
t = KnownFramesTrainer(cfg, pipe, KnownFramesDataset(full, frames), None)
params = t.trainable_parameters([pipe.transformer])
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0)
b = t.make_batch(0, list(range(8000, 8016)))
held = t.make_batch(1, list(range(8016, 8032)))
for i in range(40):
    loss = t.compute_loss(b)
    opt.zero_grad(); loss.backward(); opt.step()
    if i % 8 == 0 or i == 39:
        with torch.no_grad():
            print(i, "train batch", round(loss.item(), 4), "held-out", round(t.compute_loss(held).item(), 4))
