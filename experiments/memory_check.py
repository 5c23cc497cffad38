"""The training memory plan against the peak measured in a fresh process, for a few FLUX-shaped model sizes
(:func:`procseq.training.memory_check.check`); prints the BENCHMARKS.md table.

    python -m experiments.memory_check [--sizes xs,s,m]
"""

from __future__ import annotations

import argparse

from procseq.training.memory_check import check


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="xs,s,m")
    args = parser.parse_args(argv)
    print("| model | trainer | checkpointing | plan MB | measured MB | plan / measured - 1 |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for kind in ("adapter", "known-frames"):
            for ckpt in (False, True):
                r = check(size, kind, ckpt)
                print(f"| {size} | {kind} | {'on' if ckpt else 'off'} | {r['plan'] / 1e6:.1f} | "
                      f"{r['measured'] / 1e6:.1f} | {r['error']:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
