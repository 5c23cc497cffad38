"""The tables of BENCHMARKS.md "Quality per layout" from the output of experiments/v2_eval.sh.

    python experiments/v2_summary.py ~/.cache/procseq/eval/v2
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def rows(report: Path) -> list[dict]:
    return json.loads(report.read_text())["sequences"]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summary(seqs: list[dict]) -> str:
    attr = [s["attribute_acc"] for s in seqs if s["attribute_acc"] is not None]
    return f"{len(seqs)} | {mean(attr):.3f} | {mean([s['step_acc'] for s in seqs]):.3f}"


def main(out: Path) -> None:
    runs = {p.parent.name: rows(p) for p in sorted(out.glob("*/report.json"))}
    print("| run | n | attribute acc | step acc |\n|---|---|---|---|")
    for name, seqs in runs.items():
        print(f"| {name} | {summary(seqs)} |")
    long_domains = {"painting", "line_drawing", "lego", "pixel_art"}
    print("\nStep accuracy by length (painting, line_drawing, lego, pixel_art):\n")
    print("| run | length | n | attribute acc | step acc |\n|---|---|---|---|---|")
    for name in ("test-compositional", "test-length"):
        by_len: dict[int, list[dict]] = defaultdict(list)
        for s in runs.get(name, []):
            if s["domain"] in long_domains:
                by_len[s["num_frames"]].append(s)
        for n in sorted(by_len):
            print(f"| {name} | {n} | {summary(by_len[n])} |")
        if by_len:
            print(f"| {name} | all | {summary([s for v in by_len.values() for s in v])} |")
    print("\nPer domain:\n")
    names = [n for n in runs]
    domains = sorted({s["domain"] for seqs in runs.values() for s in seqs})
    print("| domain | " + " | ".join(f"{n} attr / step" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for d in domains:
        cells = []
        for n in names:
            seqs = [s for s in runs[n] if s["domain"] == d]
            cells.append(" / ".join(summary(seqs).split(" | ")[1:]) if seqs else "")
        print(f"| {d} | " + " | ".join(cells) + " |")
    domain = out / "domain" / "domain.json"
    if domain.is_file():
        r = json.loads(domain.read_text())
        print(f"\n--domain on unnamed paraphrases: n={r['n']}, step acc right {r['right']['step_acc']:.3f}, "
              f"wrong {r['wrong']['step_acc']:.3f}, gap {r['step_acc_gap']:.3f}; attribute acc right "
              f"{r['right']['attribute_acc']:.3f}, wrong {r['wrong']['attribute_acc']:.3f}")
        for d, v in r["per_domain"].items():
            print(f"  {d}: right {v['right']:.3f} wrong {v['wrong']:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).expanduser())
