"""Generation quality with the offline planner's plans, in a layout that reads the step captions (issue 25).

The grid feeds the prompt only (``conditioning/text.py``), so its output does not depend on the plan; the
frame-by-frame and regional layouts read every step caption. This runs ``procseq eval``'s scoring over a corpus
split with ``pipe(prompt, domain, frames, mode=MODE, planner=PLANNER)``, where PLANNER is today's
``procseq.planning.corpus_plan`` or the ``corpus_plan`` of a planner module file (an earlier version, e.g.
``git show 665cf77:src/procseq/pipelines/planning.py > /tmp/old_planning.py``).

    PYTHONPATH=src OMP_NUM_THREADS=1 python experiments/planner_quality.py --data CORPUS --split test-compositional \
        --n 5 --mode frame-by-frame --out runs/planner-quality/new [--planner-file /tmp/old_planning.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys


def main() -> None:
    """Generate, score and print the report."""
    import torch

    from procseq.data.dataset import load_split
    from procseq.eval.runner import evaluate, per_domain
    from procseq.pipelines.loading import load_pipeline
    from procseq.planning import corpus_plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test-compositional")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--mode", default="frame-by-frame")
    ap.add_argument("--planner-file", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    planner = corpus_plan
    if args.planner_file:
        spec = importlib.util.spec_from_file_location("planner_under_test", args.planner_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        planner = lambda prompt, domain, steps: module.corpus_plan(prompt, domain, steps).captions  # noqa: E731
    pipe = load_pipeline("procseq-tiny")
    pipe.set_progress_bar_config(disable=True)
    records = per_domain(load_split(args.data, args.split), args.n, list(pipe.defaults.domains))

    def generate_fn(prompt: str, domain: str, num_frames: int, seed: int):
        return pipe(prompt, domain=domain, frames=num_frames, mode=args.mode, planner=planner,
                    generator=torch.Generator("cpu").manual_seed(seed)).frames[0]

    report = evaluate(generate_fn, records, args.out, name=f"{args.mode} {args.planner_file or 'corpus_plan'}",
                      meta={"split": args.split, "mode": args.mode, "planner": args.planner_file or "corpus_plan"})
    print(report.to_markdown())


if __name__ == "__main__":
    main()
