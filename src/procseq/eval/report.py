"""Evaluation reports: per-sequence scores, their per-domain summary, Markdown and JSON.

A :class:`Report` is what :func:`procseq.eval.score_folders` and :func:`procseq.eval.evaluate`
return. :func:`compare_markdown` puts several named runs ("ground truth", "retrieval",
"procseq-tiny") into one table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procseq.eval.metrics import METRICS, SequenceScore, aggregate, per_attribute
from procseq.outputs import write_text_atomic

COLUMNS = {
    "attribute_acc": "attribute acc",
    "step_acc": "step acc",
    "psnr": "fidelity PSNR (dB)",
    "similarity": "similarity (SSIM)",
    "consistency": "consistency",
}
"""Metric name -> column header, in table order."""


@dataclass
class Report:
    """The scores of one run (one model or baseline over a set of sequences).

    Args:
        name: the run's name, shown in comparison tables.
        scores: one :class:`SequenceScore` per sequence.
        meta: free-form JSON-serialisable facts about the run (model, settings, command).
    """

    name: str
    scores: list[SequenceScore]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """:func:`~procseq.eval.metrics.aggregate` of the scores (per domain + overall)."""
        return aggregate(self.scores)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view: name, meta, summary and every per-sequence score."""
        return {
            "name": self.name,
            "meta": self.meta,
            "summary": self.summary,
            "sequences": [s.to_dict() for s in self.scores],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Report":
        """Inverse of :meth:`to_dict` (the summary is recomputed from the sequences)."""
        return cls(
            name=str(d.get("name", "")),
            scores=[SequenceScore.from_dict(s) for s in d.get("sequences", [])],
            meta=dict(d.get("meta", {})),
        )

    def to_markdown(self) -> str:
        """A Markdown section: title, the metrics table (rows: domains + overall) and the per-attribute table."""
        summary = self.summary
        return (f"## {self.name or 'evaluation'}\n\n{markdown_table(summary)}\n\n"
                f"Attribute accuracy per key (final frame):\n\n{attribute_table(summary)}\n")

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.json`` into `out_dir` (each replaced atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, js = out / "report.md", out / "report.json"
        write_text_atomic(js, json.dumps(self.to_dict(), indent=2) + "\n")
        write_text_atomic(md, self.to_markdown())
        return md, js


def load_report(path: str | Path) -> Report:
    """Read a ``report.json`` (or the folder that holds one) written by :meth:`Report.save`."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a report.json written by procseq eval.")
    return Report.from_dict(json.loads(path.read_text()))


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if metric == "psnr" else f"{value:.3f}"


def _row(label: list[str], summary: Mapping[str, Any]) -> str:
    cells = label + [str(summary["n"])] + [_fmt(m, summary.get(m)) for m in METRICS]
    return "| " + " | ".join(cells) + " |"


def markdown_table(summary: Mapping[str, Any]) -> str:
    """Markdown table of an :func:`aggregate` summary: one row per domain, then **overall**."""
    head = ["domain", "n"] + [COLUMNS[m] for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for domain, s in summary["domains"].items():
        lines.append(_row([domain], s))
    lines.append(_row(["**overall**"], summary["overall"]))
    return "\n".join(lines)


def attribute_table(summary: Mapping[str, Any]) -> str:
    """Markdown table of the per-attribute accuracy of an :func:`aggregate` summary: one row per domain, its keys
    from the worst to the best (``accessory_color 0.38, color 0.90``), so the key a model binds wrongly shows."""
    lines = ["| domain | attribute accuracy per key (worst first) |", "|---|---|"]
    for domain, s in summary["domains"].items():
        keys = sorted(per_attribute(s).items(), key=lambda kv: (kv[1], kv[0]))
        lines.append(f"| {domain} | {', '.join(f'{k} {v:.2f}' for k, v in keys) or '-'} |")
    return "\n".join(lines)


def compare_markdown(runs: Mapping[str, Report | Mapping[str, Any]]) -> str:
    """One table comparing named runs: rows are (domain, run), domain by domain, then overall.

    Args:
        runs: run name -> a :class:`Report` or an :func:`aggregate` summary (in display order).
    """
    summaries = {name: r.summary if isinstance(r, Report) else r for name, r in runs.items()}
    domains = sorted({d for s in summaries.values() for d in s["domains"]})
    head = ["domain", "run", "n"] + [COLUMNS[m] for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for domain in domains:
        for name, s in summaries.items():
            if domain in s["domains"]:
                lines.append(_row([domain, name], s["domains"][domain]))
    for name, s in summaries.items():
        lines.append(_row(["**overall**", name], s["overall"]))
    return "\n".join(lines) + "\n"


__all__ = ["COLUMNS", "Report", "attribute_table", "compare_markdown", "load_report", "markdown_table"]
