"""Attribute / step accuracy per layout (and per domain) of the reports `experiments/v3_eval.sh` writes.

``python -m experiments.v3_summary OUT [OUT2 ...]``: one markdown row per folder, one column per layout.
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


def main(folders: list[str]) -> None:
    print("| run | " + " | ".join(LAYOUTS) + " |\n|---|" + "---|" * len(LAYOUTS))
    for f in folders:
        print(f"| {f} | " + " | ".join(cell(Path(f) / m / "report.json") for m in LAYOUTS) + " |")
    for f in folders:
        for m in LAYOUTS:
            if (Path(f) / m / "report.json").is_file():
                print(f"{f} {m}: {domains(Path(f) / m / 'report.json')}")


if __name__ == "__main__":
    main(sys.argv[1:])
