"""Print the BENCHMARKS.md tables of the first adapter experiment (issue 5) from runs/adapters-exp
(`git show 6d31901:scripts/adapters_experiment.sh`; the second is `python -m experiments.adapters table`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open

from procseq.eval.report import Report, compare_markdown, load_report

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/adapters-exp")
METHODS = {  # table name -> (eval folders, training runs)
    "base alone": (["base"], []),
    "one LoRA, all domains": (["lora"], ["lora"]),
    "one LoRA per domain": (["lora-per-domain/clay", "lora-per-domain/sand_art", "lora-per-domain/origami"],
                            ["lora-clay", "lora-sand_art"]),
    "asymmetric LoRA": (["asymmetric"], ["asymmetric"]),
    "masked LoRA": (["masked"], ["masked"]),
    "masked LoRA + alignment": (["masked-align"], ["masked-align"]),
}


def params(run: str) -> int:
    with safe_open(str(OUT / run / "model" / "adapters.safetensors"), framework="pt") as f:
        return sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] for k in f.keys())


def seconds(run: str) -> float:
    lines = (OUT / run / "log.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["elapsed_s"]


print("| method | trainable parameters | training time (s) |\n|---|---|---|")
for name, (_, runs) in METHODS.items():
    p = sum(params(r) for r in runs)
    print(f"| {name} | {p:,} | {sum(seconds(r) for r in runs):.0f} |" if runs else f"| {name} | 0 | 0 |")
for split in ("test-seen", "test-compositional"):
    reports = {}
    for name, (folders, _) in METHODS.items():
        parts = [load_report(OUT / "eval" / f / split / "report.json") for f in folders]
        reports[name] = Report(name, [s for r in parts for s in r.scores])
    print(f"\n{split}:\n")
    print(compare_markdown(reports))

print("asymmetric LoRA with origami routed to the mix clay=0.5,sand_art=0.5:\n")
print(compare_markdown({f"{split}": load_report(OUT / "eval" / "asymmetric-mix" / split / "report.json")
                        for split in ("test-seen", "test-compositional")}))

if (OUT / "eval" / "asymmetric-balanced").is_dir():  # experiments/adapters_experiment.sh balanced
    print("\nfollow-up, domain-balanced batches (data.balance_domains):\n")
    print("| method | trainable parameters | training time (s) |\n|---|---|---|")
    for run in ("lora-balanced", "asymmetric-balanced"):
        print(f"| {run} | {params(run):,} | {seconds(run):.0f} |")
    for split in ("test-seen", "test-compositional"):
        runs = {name: load_report(OUT / "eval" / name / split / "report.json")
                for name in ("lora-balanced", "asymmetric-balanced")}
        print(f"\n{split}:\n")
        print(compare_markdown(runs))
