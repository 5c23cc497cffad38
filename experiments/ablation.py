"""What the paper-ablation drivers share (issue 26): the records of a corpus split, the call ``procseq eval --mode``
makes for one record, and the table of each variant's paired difference to the default variant.

Every variant generates the same records with the same seeds (:func:`procseq.eval.runner.record_seed`), so a
difference between two variants is paired: its 95 % interval comes from resampling records, each record's two
scores kept together (:func:`procseq.eval.intervals.paired_difference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from procseq.eval.intervals import paired_difference
from procseq.eval.report import Report

PRIMARY = ("step_acc", "attribute_acc")
"""The figures an ablation table reports, with their paired differences."""


def corpus_records(data: Path, split: str, n: int, domains: Sequence[str], frames: int | None = None) -> list[Any]:
    """The first `n` records per domain of `split` in the corpus at `data` (only those of `frames` steps when
    given), in the order ``procseq eval`` takes them."""
    from procseq.data.dataset import load_split
    from procseq.eval.runner import per_domain

    records = load_split(data, split)
    if frames is not None:
        records = [r for r in records if int(r["num_frames"]) == frames]
    chosen = per_domain(records, n, list(domains))
    if not chosen:
        raise ValueError(f"No {split} records of the domains {','.join(domains)}"
                         + (f" with {frames} frames" if frames else "") + f" in {data}; check --data and --split.")
    return chosen


def eval_call(pipe: Any, record: Mapping[str, Any], seed: int, captions: str = "plan", steps: int | None = None,
              true_cfg_scale: float | None = None, **layout: Any) -> Any:
    """One record's sequence with the settings ``procseq eval --mode`` uses (the model's sampling defaults, the
    empty negative prompt, the planner's captions, a CPU generator at `seed`); `captions="truth"` hands the
    pipeline the record's own captions instead; `layout` is ``mode=...`` and its options (``regional=``,
    ``frame_by_frame=``). Returns the output's frames."""
    import torch

    if captions not in ("plan", "truth"):
        raise ValueError(f"captions must be 'plan' (the planner's, as procseq eval) or 'truth', got {captions!r}.")
    return pipe(str(record["prompt"]), domain=str(record["domain"]), frames=int(record["num_frames"]),
                num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed), negative_prompt="",
                true_cfg_scale=true_cfg_scale, captions=list(record["captions"]) if captions == "truth" else None,
                **layout).frames[0]


def per_record(report: Report, metric: str) -> dict[str, float | None]:
    """`metric` of every sequence of `report`, by record id (the sequence folder's name)."""
    return {s.name: getattr(s, metric) for s in report.scores}


def _mean(values: Mapping[str, float | None]) -> float | None:
    vals = [v for v in values.values() if v is not None]
    return sum(vals) / len(vals) if vals else None


def paired_table(reports: Mapping[str, Report], default: str, metrics: Sequence[str] = PRIMARY) -> str:
    """A Markdown table: per variant, each metric's mean and its paired difference to the `default` variant with
    the 95 % bootstrap interval (``*``: the interval, rounded to 3 decimals as printed, excludes 0)."""
    if default not in reports:
        raise ValueError(f"The default variant {default!r} was not run; run it beside {', '.join(reports)}.")
    names = {"step_acc": "step acc", "attribute_acc": "attribute acc", "consistency": "consistency"}
    head = "| variant | n | " + " | ".join(f"{names.get(m, m)} | diff [95% CI]" for m in metrics) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(metrics)]
    for name, report in reports.items():
        cells = []
        for metric in metrics:
            values, ref = per_record(report, metric), per_record(reports[default], metric)
            mean = _mean(values)
            if name == default:
                cells += [f"{mean:.3f}" if mean is not None else "-", "(default)"]
                continue
            d, low, high, _ = paired_difference(values, ref)
            mark = " *" if round(low, 3) > 0 or round(high, 3) < 0 else ""  # as printed: a bound of +0.000 is 0
            cells += [f"{mean:.3f}" if mean is not None else "-", f"{d:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"]
        lines.append(f"| {name} | {len(report.scores)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["PRIMARY", "corpus_records", "eval_call", "paired_table", "per_record"]
