"""Attribute / step accuracy per layout (and per domain) of the reports `experiments/v3_eval.sh` writes.

``python -m experiments.v3_summary OUT [OUT2 ...]``: one markdown row per folder, one column per layout.
``python -m experiments.v3_summary --paired A B``: A minus B per layout both hold, over the sequences both scored, with
95 % bootstrap intervals (:func:`procseq.eval.intervals.paired_difference`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LAYOUTS = ("grid", "regional", "frame-by-frame")


def cell(report: Path) -> str:
    """``attribute / step (n)`` of one report, or ``-`` when it is missing."""
    if not report.is_file():
        return "-"
    overall = json.loads(report.read_text())["summary"]["overall"]
    return f"{overall['attribute_acc']:.3f} / {overall['step_acc']:.3f} (n={overall['n']})"


def domains(report: Path) -> str:
    """Step accuracy per domain of one report."""
    if not report.is_file():
        return ""
    per = json.loads(report.read_text())["summary"]["domains"]
    return ", ".join(f"{d} {v['attribute_acc']:.2f}/{v['step_acc']:.2f}" for d, v in per.items())


def per_sequence(report: Path, key: str) -> dict[str, float]:
    """`key` (``attribute_acc`` or ``step_acc``) of every sequence of one report, by sequence name."""
    return {q["name"]: q[key] for q in json.loads(report.read_text())["sequences"]}


def paired(a: Path, b: Path) -> None:
    """A minus B on the sequences both scored, per layout both evaluated."""
    from procseq.eval.intervals import paired_difference

    for m in LAYOUTS:
        ra, rb = a / m / "report.json", b / m / "report.json"
        if ra.is_file() and rb.is_file():
            for key in ("attribute_acc", "step_acc"):
                d, lo, hi, n = paired_difference(per_sequence(ra, key), per_sequence(rb, key))
                print(f"{m} {key}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}] (n={n})")


def main(folders: list[str]) -> None:
    print("| run | " + " | ".join(LAYOUTS) + " |\n|---|" + "---|" * len(LAYOUTS))
    for f in folders:
        print(f"| {f} | " + " | ".join(cell(Path(f) / m / "report.json") for m in LAYOUTS) + " |")
    for f in folders:
        for m in LAYOUTS:
            if (Path(f) / m / "report.json").is_file():
                print(f"{f} {m}: {domains(Path(f) / m / 'report.json')}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--paired"] and len(sys.argv) == 4:
        paired(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(sys.argv[1:])
