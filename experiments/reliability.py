"""Run the hostile-user suite of issue #10 and print its counts (BENCHMARKS.md, "Reliability").

    OMP_NUM_THREADS=1 python experiments/reliability.py [--json-out FILE] [-k SUBSTRING] [--family F] [--src DIR]

--src runs the same cases against another procseq source tree (e.g. an older commit exported with
`git archive`), for before/after counts.

Builds the micro test model (tests/conftest.py) in a temporary folder, runs every case of
tests/reliability/hostile.py in its own fresh folder, and prints one line per case that is not
`ok`/`clean` as expected, then the table: cases, clean errors, successes, tracebacks, unclear,
wrong results (a case's own check failed, or its error does not name what to change), data lost,
partial output left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
SRC = Path(sys.argv[sys.argv.index("--src") + 1]).resolve() if "--src" in sys.argv else ROOT / "src"
sys.path[:0] = [str(SRC), str(ROOT)]

from procseq.models.tiny import save_tiny_model  # noqa: E402
from tests.conftest import TEST_DOMAINS, TEXTS, micro_config  # noqa: E402
from tests.reliability.hostile import cases, run_case  # noqa: E402


def main() -> None:
    """Run the cases; print the failures and the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--family", default=None, help="only these families, comma-separated (output, numbers, ...)")
    parser.add_argument("--src", default=None, help="procseq source folder to test (default: this tree's src/)")
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    import procseq

    print(f"procseq from {Path(procseq.__file__).parent}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_model(Path(tmp) / "micro", micro_config(), texts=TEXTS, seed=0, domains=TEST_DOMAINS)
        outcomes, start = [], time.perf_counter()
        families = args.family.split(",") if args.family else None
        chosen = [c for c in cases() if args.k in c.name and (families is None or c.family in families)]
        for i, case in enumerate(chosen):
            outcome = run_case(case, Path(tmp) / f"case{i:03d}", model)
            outcomes.append(outcome)
            if not outcome.good:
                print(f"[{case.family}] {case.name}: {outcome.kind} lost={outcome.lost} partial={outcome.partial} "
                      f"-- {outcome.detail}", flush=True)
    kinds = Counter(o.kind for o in outcomes)
    summary = {"cases": len(outcomes), "clean_errors": kinds["clean"], "ok": kinds["ok"],
               "tracebacks": kinds["traceback"], "unclear": kinds["unclear"], "wrong": kinds["wrong"],
               "data_lost": sum(bool(o.lost) for o in outcomes), "partial_output": sum(bool(o.partial) for o in outcomes),
               "unexpected": sum(not o.good for o in outcomes), "seconds": round(time.perf_counter() - start, 1),
               "families": dict(Counter(o.case.family for o in outcomes))}
    print("| cases | clean errors | succeeded | tracebacks | unclear | wrong result | data lost | partial output | "
          "not as expected |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {summary['cases']} | {summary['clean_errors']} | {summary['ok']} | {summary['tracebacks']} | "
          f"{summary['unclear']} | {summary['wrong']} | {summary['data_lost']} | {summary['partial_output']} | "
          f"{summary['unexpected']} |")
    print(json.dumps(summary))
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(1 if summary["unexpected"] else 0)


if __name__ == "__main__":
    main()
