"""Quantization on the embedded model: CPU seconds per 9-frame sequence, fp32 vs torchao int8 (diffusers'
quantization_config), variants run in turn in one process. Needs torchao (pip install torchao).

    OMP_NUM_THREADS=1 python experiments/quantize_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
import torch

from procseq.pipelines.loading import load_pipeline


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pipes = {name: load_pipeline("procseq-tiny", quantize=name, adapters="none", dtype="float32")
             for name in ("none", "int8")}
    kwargs = dict(prompt="a red lego tower", domain="lego", frames=9, output_type="np")
    ref = None
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
        pipe(**kwargs, generator=torch.Generator().manual_seed(0))  # warm-up
    for rnd in range(args.rounds):
        for name, pipe in pipes.items():
            t = cpu_seconds()
            for _ in range(3):
                images = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
            ref = images if ref is None else ref
            print(f"round {rnd} {name}: {(cpu_seconds() - t) / 3:.3f} CPU s/sequence, "
                  f"max |diff| vs fp32 {float(np.abs(images - ref).max()):.4f}")


if __name__ == "__main__":
    main()
