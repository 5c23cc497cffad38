"""A model folder from a layouts-trainer checkpoint, to evaluate a run while it goes on.

``python -m experiments.checkpoint_model RUN_DIR/checkpoints/step_N BASE OUT [--step-tokens 16 --known-mode inplace --no-grid-step-text]``

Copies the base model folder (the run's ``model.path``) without procseq's per-layout LoRAs (a base trained on every
layout needs none), puts the checkpoint's transformer weights (``custom_checkpoint_0.pkl``) and step embedding
(``custom_checkpoint_1.pkl``) in, and records ``step_tokens`` / ``known_mode`` (/ ``grid_step_text``) in procseq.json as the run's final save
does (:func:`procseq.training.layouts.run_layout_training`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("base")
    p.add_argument("out", type=Path)
    p.add_argument("--step-tokens", type=int, default=16)
    p.add_argument("--known-mode", default="inplace")
    p.add_argument("--no-grid-step-text", action="store_true",
                   help="the run trained its grid on the prompt alone (layouts.grid_step_text: false)")
    args = p.parse_args()
    from diffusers import FluxTransformer2DModel

    from procseq.conditioning.history import EMBEDDING_FILE, StepEmbedding, save_step_embedding
    from procseq.models.loading import resolve_model

    base = Path(resolve_model(args.base))
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(base, args.out, ignore=shutil.ignore_patterns("known_frames", "recraft", "regional",
                                                                  "frame_by_frame", "training"))
    transformer = FluxTransformer2DModel.from_pretrained(args.out / "transformer")
    transformer.load_state_dict(torch.load(args.checkpoint / "custom_checkpoint_0.pkl", map_location="cpu"))
    transformer.save_pretrained(args.out / "transformer")
    table = torch.load(args.checkpoint / "custom_checkpoint_1.pkl", map_location="cpu")
    emb = StepEmbedding(transformer.config.in_channels, table["table"].shape[0])
    emb.load_state_dict(table)
    (args.out / "frame_by_frame").mkdir()
    save_step_embedding(emb, args.out / "frame_by_frame" / EMBEDDING_FILE)
    (args.out / "frame_by_frame" / "frame_by_frame.json").write_text(json.dumps({"k": 2}) + "\n")
    meta = json.loads((args.out / "procseq.json").read_text())
    meta.update(step_tokens=args.step_tokens, known_mode=args.known_mode)
    if args.no_grid_step_text:
        meta["grid_step_text"] = False
    (args.out / "procseq.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
