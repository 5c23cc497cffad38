"""The adapter experiment (BENCHMARKS.md, issues #5 and #15): every way of adding clay and sand_art to the
frozen base, scored on the corpus with 95% bootstrap intervals.

Each *method* is an adapter run of ``experiments/adapters_experiment.sh train`` (``RUNS/<run>/model/
adapters.safetensors``) and a routing per domain; origami, which no adapter saw, shows what each
method does for an unseen domain. Every method generates the same records with the same seeds
(:func:`procseq.eval.runner.record_seed`), so differences between two methods are *paired*: their
intervals come from resampling records, keeping each record's two scores together.

    python -m experiments.adapters run --runs runs/adapters-exp2 --data runs/corpus200 --n 200
    python -m experiments.adapters table --runs runs/adapters-exp2

Scores are the shipped scorer's (:func:`procseq.eval.metrics.score_sequence`) on frames generated in
batches and kept in memory; one JSON line per sequence goes to ``RUNS/eval/<method>/<split>/<domain>.jsonl``
(a rerun keeps what is there and generates the rest).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.common import SPLITS
from procseq.eval.intervals import bootstrap_interval, paired_difference
from procseq.eval.metrics import METRICS, score_sequence
from procseq.eval.runner import record_seed
from procseq.eval.scorer import spec_from_dict

Route = tuple[str | None, dict[str, float] | None]  # (adapter run folder or None for the base, adapter_weights)

#: method -> (table label, routing per domain; "*" for every domain).
METHODS: dict[str, tuple[str, dict[str, Route]]] = {
    "base": ("base alone", {"*": (None, None)}),
    "lora": ("one LoRA, all domains", {"*": ("lora", {"all": 1.0})}),
    "lora-per-domain": ("one LoRA per domain (origami: clay's)", {
        "clay": ("lora-clay", None), "sand_art": ("lora-sand_art", None), "origami": ("lora-clay", {"clay": 1.0})}),
    "asymmetric": ("asymmetric LoRA (origami: the base)", {"*": ("asymmetric", None)}),
    "asymmetric-mix": ("asymmetric LoRA, origami as clay=0.5,sand_art=0.5", {
        "origami": ("asymmetric", {"clay": 0.5, "sand_art": 0.5})}),
    "asymmetric-frozen-a": ("asymmetric LoRA, A frozen (origami: the base)", {"*": ("asymmetric-frozen-a", None)}),
    "masked": ("masked LoRA, rank rows", {"*": ("masked", None)}),
    "masked-align": ("masked LoRA, rank rows + alignment", {"*": ("masked-align", None)}),
    "masked-rows": ("masked LoRA, output rows fixed (ProcessMaker)", {"*": ("masked-rows", None)}),
    "masked-rows-learned": ("masked LoRA, output rows learned", {"*": ("masked-rows-learned", None)}),
}
DOMAINS = ("clay", "sand_art", "origami")
PRIMARY = ("attribute_acc", "step_acc")


def method_route(method: str, domain: str) -> Route | None:
    """The (run, adapter_weights) of `method` for `domain`, or None when the method skips the domain."""
    routes = METHODS[method][1]
    return routes.get(domain, routes.get("*"))


def score_file(runs: Path, method: str, split: str, domain: str) -> Path:
    """Where the per-sequence scores of one method, split and domain live."""
    return runs / "eval" / method / split / f"{domain}.jsonl"


def load_scores(path: Path) -> dict[str, dict[str, Any]]:
    """Per-sequence scores by record id (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def evaluate_method(runs: Path, data: Path, method: str, n: int, batch: int = 16, steps: int | None = None,
                    splits: Sequence[str] = SPLITS, domains: Sequence[str] = DOMAINS, progress: bool = True) -> None:
    """Generate and score the first `n` records per domain and split for `method` (resumable)."""
    import torch
    from tqdm import tqdm

    from procseq.data.dataset import load_split
    from procseq.pipelines.loading import load_pipeline

    pipes: dict[str | None, Any] = {}
    for split in splits:
        records = load_split(data, split)
        for domain in domains:
            route = method_route(method, domain)
            if route is None:
                continue
            run, mix = route
            file = None if run is None else runs / run / "model" / "adapters.safetensors"
            if file is not None and not file.is_file():
                raise FileNotFoundError(f"No adapter file {file}; train it first: experiments/adapters_experiment.sh "
                                        f"train {run}")
            if run not in pipes:
                pipes[run] = load_pipeline("procseq-tiny", dtype="float32", device="cpu",
                                           adapters=str(file) if file else "none")
                pipes[run].set_progress_bar_config(disable=True)
            pipe = pipes[run]
            out = score_file(runs, method, split, domain)
            done = load_scores(out)
            todo = [r for r in records if r["domain"] == domain][:n]
            if len(todo) < n:
                raise ValueError(f"{data}/{split} has {len(todo)} {domain} records, fewer than --n {n}; make a "
                                 f"corpus with --test-per-domain {n}.")
            todo = [r for r in todo if r["id"] not in done]
            out.parent.mkdir(parents=True, exist_ok=True)
            bar = tqdm(total=len(todo), desc=f"{method} {split} {domain}", disable=not progress)
            for i in range(0, len(todo), batch):
                chunk = todo[i:i + batch]
                seeds = [record_seed(r) for r in chunk]
                frames = int(chunk[0]["num_frames"])
                with torch.no_grad():
                    result = pipe([r["prompt"] for r in chunk], domain=domain, frames=frames, num_inference_steps=steps,
                                  generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                                  adapter_weights=mix, allow_unseen=True, true_cfg_scale=1.0)
                lines = []
                for r, s, f in zip(chunk, seeds, result.frames):
                    score = score_sequence(f, spec_from_dict(r["spec"]), name=r["id"])
                    lines.append(json.dumps({"id": r["id"], "seed": s, **{m: getattr(score, m) for m in METRICS}}))
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
                bar.update(len(chunk))
            bar.close()


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean, low, high = bootstrap_interval(values)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _values(rows: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, float]:
    return {k: float(r[metric]) for k, r in rows.items() if r.get(metric) is not None}


def tables(runs: Path, reference: str = "lora") -> str:
    """The Markdown tables: per method, domain and split the metrics with 95% intervals for the accuracies,
    then the paired differences of every method to `reference`."""
    lines: list[str] = []
    for split in SPLITS:
        lines += [f"\n{split} (mean [95% bootstrap interval]):\n",
                  "| domain | method | n | attribute acc | step acc | PSNR (dB) | SSIM | consistency |",
                  "|---|---|---|---|---|---|---|---|"]
        for domain in DOMAINS:
            for method, (label, _) in METHODS.items():
                rows = load_scores(score_file(runs, method, split, domain))
                if not rows:
                    continue
                means = [np.mean(list(_values(rows, m).values())) if _values(rows, m) else float("nan")
                         for m in ("psnr", "similarity", "consistency")]
                lines.append(f"| {domain} | {label} | {len(rows)} | {_cell(list(_values(rows, 'attribute_acc').values()))}"
                             f" | {_cell(list(_values(rows, 'step_acc').values()))} | {means[0]:.2f} | {means[1]:.3f}"
                             f" | {means[2]:.3f} |")
        lines += [f"\n{split}, paired difference to {METHODS[reference][0]} (same records and seeds; "
                  "95% bootstrap interval; an interval that excludes 0 is a difference outside noise):\n",
                  "| domain | method | n | attribute acc diff | step acc diff |", "|---|---|---|---|---|"]
        for domain in DOMAINS:
            ref = load_scores(score_file(runs, reference, split, domain))
            for method, (label, _) in METHODS.items():
                rows = load_scores(score_file(runs, method, split, domain))
                if method == reference or not rows or not ref:
                    continue
                cells = []
                for metric in PRIMARY:
                    mean, low, high, n = paired_difference(_values(rows, metric), _values(ref, metric))
                    mark = " *" if low > 0 or high < 0 else ""
                    cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]{mark}")
                lines.append(f"| {domain} | {label} | {n} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def learned_rows_moved(file: Path, model: str = "procseq-tiny") -> float | None:
    """Share of a learned row mask's domain rows that left the fixed layout it started from (None: no learned mask)."""
    from diffusers import FluxTransformer2DModel

    from procseq.adapters import adapter_layers, load_adapters
    from procseq.models.loading import resolve_model

    transformer = FluxTransformer2DModel.from_pretrained(resolve_model(model), subfolder="transformer")
    load_adapters(transformer, file)
    moved = total = 0.0
    for layer in adapter_layers(transformer).values():
        if getattr(layer, "lora_row_logits", None) is None:
            return None
        hard, _ = layer.ownership()
        moved += float((hard * (1 - layer.fixed_owner)).sum())
        total += float(layer.fixed_owner.sum())
    return moved / total


def training_table(runs: Path) -> str:
    """Trainable parameters (the adapter file's) and wall-clock training time per run."""
    from safetensors import safe_open

    lines = ["| run | steps | trainable parameters | training time (s) | learned mask: rows moved |",
             "|---|---|---|---|---|"]
    for run in sorted(p.name for p in runs.iterdir() if (p / "model" / "adapters.safetensors").is_file()):
        with safe_open(str(runs / run / "model" / "adapters.safetensors"), framework="pt") as f:
            params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
            frozen = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys() if ".lora_A." in k)
        log = [json.loads(x) for x in (runs / run / "log.jsonl").read_text().splitlines() if x.strip()]
        cfg = (runs / run / "config.yaml").read_text()
        if "freeze_a: true" in cfg:
            params -= frozen
        moved = learned_rows_moved(runs / run / "model" / "adapters.safetensors") if "row_mask: learned" in cfg else None
        lines.append(f"| {run} | {log[-1]['step']} | {params:,} | {log[-1]['elapsed_s']:.0f} | "
                     f"{'-' if moved is None else f'{moved:.1%}'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m experiments.adapters run|table``."""
    parser = argparse.ArgumentParser(prog="python -m experiments.adapters", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate and score (resumable)")
    run.add_argument("--runs", type=Path, default=Path("runs/adapters-exp2"))
    run.add_argument("--data", type=Path, default=Path("runs/corpus200"))
    run.add_argument("--n", type=int, default=200, help="records per domain and split")
    run.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    run.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated domains")
    run.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits")
    run.add_argument("--batch", type=int, default=16)
    run.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model's)")
    table = sub.add_parser("table", help="print the Markdown tables")
    table.add_argument("--runs", type=Path, default=Path("runs/adapters-exp2"))
    table.add_argument("--reference", default="lora")
    args = parser.parse_args(argv)
    if args.command == "table":
        print(training_table(args.runs))
        print(tables(args.runs, args.reference))
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.n < 1:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}" if unknown else "--n must be >= 1")
    for method in methods:
        evaluate_method(args.runs, args.data, method, args.n, args.batch, args.steps,
                        splits=[s.strip() for s in args.splits.split(",") if s.strip()],
                        domains=[d.strip() for d in args.domains.split(",") if d.strip()])


if __name__ == "__main__":
    main()
