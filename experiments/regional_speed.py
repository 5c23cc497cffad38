"""Regional mode: CPU seconds per sequence, the masked pass group by group with true CFG's two branches in one batch
(the default; the batch needs a model with padded step text, ``step_tokens``) against one dense masked attention with
two CFG passes (the regional path before issues 24/30), variants run in turn in one process.

    OMP_NUM_THREADS=1 python -m experiments.regional_speed --frames 16 32 64 --rounds 2 [--model FOLDER]
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
    args = parser.parse_args()
    pipe = load_pipeline(args.model, dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    print(f"load average {os.getloadavg()[0]:.1f}; threads {torch.get_num_threads()}")
    print(f"model {args.model}, step_tokens {pipe.defaults.step_tokens}, true CFG {pipe.defaults.true_cfg_scale}")
    print("| frames | dense, 2 CFG passes (CPU s) | grouped, batched CFG (CPU s) | speed-up | max abs pixel diff |")
    print("|---|---|---|---|---|")
    for frames in args.frames:
        times: dict[bool, list[float]] = {True: [], False: []}
        images: dict[bool, np.ndarray] = {}
        for _ in range(args.rounds):
            for grouped in (False, True):
                pipe.batch_cfg = None if grouped else False
                t = cpu_seconds()
                out = pipe("a LEGO tower of many bricks, red and blue, on a gray baseplate", domain="lego",
                           frames=frames, mode="regional", output_type="np",
                           regional=RegionalConfig(grouped_attention=grouped),
                           generator=torch.Generator().manual_seed(0))
                times[grouped].append(cpu_seconds() - t)
                images[grouped] = out.images
        dense, grouped = min(times[False]), min(times[True])
        diff = float(np.abs(images[True] - images[False]).max())
        print(f"| {frames} | {dense:.2f} | {grouped:.2f} | {dense / grouped:.2f}x | {diff:.4f} |", flush=True)


if __name__ == "__main__":
    main()
