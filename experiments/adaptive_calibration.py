"""Calibrate adaptive steps' thresholds on the TRAINING split (:func:`procseq.eval.adaptive_calibration.calibrate`)
and write the calibration file the pipeline reads (the shipped one: ``src/procseq/embedded/procseq-tiny/``).

    python -m experiments.adaptive_calibration --data data_cache/corpus --n 40 \\
        --out src/procseq/embedded/procseq-tiny/adaptive_calibration.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.common import DOMAINS
from procseq.eval.adaptive_calibration import calibrate
from procseq.pipelines.insertion import INSERTIONS


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    from procseq.models.features import PipelineFeatures
    from procseq.pipelines.loading import load_pipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", default="data_cache/corpus", type=Path)
    p.add_argument("--model", default=None)
    p.add_argument("--n", default=40, type=int, help="training sequences per domain")
    p.add_argument("--domains", default=DOMAINS)
    p.add_argument("--local", default="patch", choices=("patch", "nearest"))
    p.add_argument("--n-insertion", default=10, type=int,
                   help="training sequences per domain that choose the insertion (average or model; 0: average)")
    p.add_argument("--insertions", default=",".join(INSERTIONS),
                   help="the insertions compared per domain (average, model: from both neighbours, sequence: from "
                        "the whole sequence)")
    p.add_argument("--clean-rate", default=0.02, type=float, help="at most this share of clean sequences edited")
    args = p.parse_args(argv)
    pipe = load_pipeline(args.model, device="cpu", adapters="none")
    pipe.set_progress_bar_config(disable=True)
    cal = calibrate(args.data, PipelineFeatures(pipe), args.n, args.domains.split(","), args.local, args.clean_rate,
                    pipe=pipe if args.n_insertion else None, n_insertion=args.n_insertion,
                    insertions=tuple(args.insertions.split(",")))
    cal.source["command"] = "python -m experiments.adaptive_calibration " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print(f"wrote {cal.save(args.out)}")


if __name__ == "__main__":
    main()
