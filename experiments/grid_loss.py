"""The grid's flow-matching loss of several model folders on the same batches: a cheap check of a layouts run.

Each model is scored on the same sequences, noise and timesteps (the layouts trainer's own grid batches, seeded by
``train.seed``, nothing trained), on each split given. Issue 26's CPU runs rank here as the held-out evaluation
ranks them (v2, then grid alone, then grid + regional, then grid + frame by frame), in seconds instead of minutes.

    OMP_NUM_THREADS=2 python -m experiments.grid_loss ~/.cache/procseq/runs/v3t.yaml \\
        --model v2=procseq-tiny --model v3n=~/.cache/procseq/runs/v3n/model --splits train test-compositional
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    from procseq.training.config import RunConfig
    from procseq.training.layouts import build_layout_trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a layouts run config (its data, step_tokens and caches)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER",
                        help="a model folder to score (repeat)")
    parser.add_argument("--splits", nargs="+", default=["train", "test-compositional"])
    parser.add_argument("--steps", type=int, default=12, help="batches of train.batch_size sequences")
    parser.add_argument("--seed", type=int, default=5, help="the batches' seed (train.seed)")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    print("| model | " + " | ".join(args.splits) + " |\n|---|" + "---|" * len(args.splits))
    for name, folder in models.items():
        row = []
        for split in args.splits:
            cfg = RunConfig.from_yaml(args.config, overrides=[
                "layouts.weights={grid: 1.0}", f"model.path={folder}", f"data.split={split}",
                f"train.seed={args.seed}", "train.output_dir=/tmp/procseq-grid-loss"])
            trainer = build_layout_trainer(cfg, progress=False)
            with torch.no_grad():
                losses = [float(trainer.loss_at(s, trainer.schedule(s))) for s in range(args.steps)]
            row.append(f"{sum(losses) / len(losses):.4f}")
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
