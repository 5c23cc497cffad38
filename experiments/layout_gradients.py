"""Which shared weights each layout's training pulls, and whether it pulls against the grid (issue 26).

The layouts trainer's own batches (:func:`procseq.training.layouts.build_layout_trainer`, nothing trained): for
`--steps` steps, each layout's sub-batch loss is differentiated alone, and the gradients are summed per layout.
Printed per part of the transformer: each layout's gradient norm and the cosine of its gradient with the grid's.
A negative cosine means a step on that layout's loss raises the grid's loss to first order (a conflict); the last
column is that first-order change of the grid loss for a unit step along the other layout's gradient,
``-g_grid . g_other / |g_other|``, in units of the grid loss.

    OMP_NUM_THREADS=1 python -m experiments.layout_gradients ~/.cache/procseq/runs/v3t.yaml --steps 8 \\
        --set "layouts.weights={grid: 0.34, regional: 0.33, frame-by-frame: 0.33}"
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import torch

PARTS = [
    (r"^x_embedder\.", "x_embedder (input tokens)"),
    (r"^context_embedder\.", "context_embedder (text)"),
    (r"^time_text_embed\.", "time / pooled-text embedding"),
    (r"^transformer_blocks\.\d+\.(attn\.(to_[qkv]|norm_[qk])|norm1\.)", "double blocks: image q/k/v + norm1"),
    (r"^transformer_blocks\.\d+\.attn\.to_out", "double blocks: image attention out"),
    (r"^transformer_blocks\.\d+\.(attn\.(add_|norm_added|to_add_out)|norm1_context|ff_context|norm2_context)",
     "double blocks: text stream"),
    (r"^transformer_blocks\.\d+\.(ff\.|norm2\.)", "double blocks: image feed-forward"),
    (r"^single_transformer_blocks\.\d+\.attn\.", "single blocks: attention"),
    (r"^single_transformer_blocks\.\d+\.(proj_mlp|proj_out|norm\.)", "single blocks: mlp, out, norm"),
    (r"^(norm_out|proj_out)\.", "output (norm_out, proj_out)"),
]


def part_of(name: str) -> str:
    """The :data:`PARTS` label of a transformer parameter name."""
    return next((label for pattern, label in PARTS if re.search(pattern, name)), "other")


def main() -> None:
    from procseq.training.config import RunConfig
    from procseq.training.layouts import build_layout_trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a layouts run config (procseq train base's YAML)")
    parser.add_argument("--steps", type=int, default=8, help="steps of batches to sum gradients over")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides, as procseq train --set")
    args = parser.parse_args()
    cfg = RunConfig.from_yaml(args.config, overrides=args.overrides)
    trainer = build_layout_trainer(cfg, progress=False)
    transformer = trainer.pipe.transformer
    transformer.requires_grad_(True)
    names = [n for n, _ in transformer.named_parameters()]
    params = [p for _, p in transformer.named_parameters()]
    grads: dict[str, list[torch.Tensor]] = {}
    losses: dict[str, list[float]] = defaultdict(list)
    for step in range(args.steps):
        for batch, count in trainer.make_batch(step, trainer.schedule(step)):
            loss = trainer.batch_loss(batch) * count
            g = torch.autograd.grad(loss, params, allow_unused=True)
            mine = grads.setdefault(batch.layout, [torch.zeros_like(p) for p in params])
            for acc, gi in zip(mine, g):
                if gi is not None:
                    acc += gi
            losses[batch.layout].append(float(loss.detach()) / count)
    layouts = sorted(grads, key=lambda n: (n != "grid", n))
    print(f"config {args.config}, {args.steps} steps of batch {cfg.train.batch_size}; mean loss "
          + ", ".join(f"{n} {sum(v) / len(v):.4f} ({len(v)} sub-batches)" for n, v in losses.items()))
    if "grid" not in grads:
        raise SystemExit("no grid sub-batch: give the grid a share in layouts.weights")
    others = [n for n in layouts if n != "grid"]
    header = "| part | " + " | ".join(f"|g {n}|" for n in layouts) + " | " + \
        " | ".join(f"cos(grid, {n}) | grid loss change per unit step on {n}" for n in others) + " |"
    print(header + "\n|" + "---|" * (1 + len(layouts) + 2 * len(others)))
    labels = [label for _, label in PARTS] + ["other", "whole transformer"]
    for label in labels:
        idx = [i for i, n in enumerate(names) if label == "whole transformer" or part_of(n) == label]
        if not idx:
            continue
        flat = {n: torch.cat([grads[n][i].flatten() for i in idx]) for n in layouts}
        row = [f"{flat[n].norm():.3g}" for n in layouts]
        for n in others:
            cos = torch.nn.functional.cosine_similarity(flat["grid"], flat[n], dim=0)
            change = -(flat["grid"] @ flat[n]) / flat[n].norm().clamp_min(1e-12)
            row += [f"{cos:+.3f}", f"{change:+.3g}"]
        print(f"| {label} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
