"""Regional mode: CPU seconds per sequence, the masked pass group by group with true CFG's two branches in one batch
(the default; the batch needs a model with padded step text, ``step_tokens``) against one dense masked attention with
two CFG passes (the regional path before issues 24/30), variants run in turn in one process.

    OMP_NUM_THREADS=1 python -m experiments.regional_speed --frames 16 32 64 --rounds 2 [--model FOLDER] [--floor]

``--floor`` also times regional mode with the mask off (``RegionalConfig(mask=False)``: one plain attention over every
token per layer, the same text, ids and steps). Every exact regional path runs that plain attention as its global
pass (CookAnything's blend, 0.1 by default) besides the masked one, so its time is a floor for any exact path, and the
dense time over it bounds the speed-up any exact path can reach.
"""

from __future__ import annotations

import argparse
import os
import resource

import numpy as np
import torch

from procseq.pipelines.loading import load_pipeline
from procseq.layouts.regional import RegionalConfig


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="procseq-tiny")
    parser.add_argument("--floor", action="store_true",
                        help="also time the mask off (the global pass alone): the bound for any exact path")
    args = parser.parse_args()
    pipe = load_pipeline(args.model, dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    print(f"load average {os.getloadavg()[0]:.1f}; threads {torch.get_num_threads()}")
    print(f"model {args.model}, step_tokens {pipe.defaults.step_tokens}, true CFG {pipe.defaults.true_cfg_scale}")
    floor = " | mask off: the global pass alone (CPU s) | bound for an exact path |" if args.floor else " |"
    print("| frames | dense, 2 CFG passes (CPU s) | grouped, batched CFG (CPU s) | speed-up | max abs pixel diff" + floor)
    print("|---|---|---|---|---" + ("|---|---|" if args.floor else "|"))
    for frames in args.frames:
        variants = {"dense": RegionalConfig(grouped_attention=False), "grouped": RegionalConfig()}
        if args.floor:
            variants["mask off"] = RegionalConfig(mask=False)
        times: dict[str, list[float]] = {name: [] for name in variants}
        images: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, config in variants.items():
                pipe.batch_cfg = False if name == "dense" else None
                t = cpu_seconds()
                out = pipe("a LEGO tower of many bricks, red and blue, on a gray baseplate", domain="lego",
                           frames=frames, mode="regional", output_type="np", regional=config,
                           generator=torch.Generator().manual_seed(0))
                times[name].append(cpu_seconds() - t)
                images[name] = out.images
        dense, grouped = min(times["dense"]), min(times["grouped"])
        diff = float(np.abs(images["grouped"] - images["dense"]).max())
        row = f"| {frames} | {dense:.2f} | {grouped:.2f} | {dense / grouped:.2f}x | {diff:.4f} |"
        if args.floor:
            plain = min(times["mask off"])
            row += f" {plain:.2f} | {dense / plain:.2f}x |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
