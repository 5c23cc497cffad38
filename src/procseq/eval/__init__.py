"""Evaluation: ground-truth metrics on the synthetic corpus, baselines, reports; CLIP and VLM judge for real data.

    from procseq.eval import evaluate, run_ground_truth, run_retrieval, compare_markdown
    report = evaluate(generate_fn, load_split(data_dir, "test-seen"), "runs/tiny")
"""

from __future__ import annotations

from typing import Any

from procseq.eval.baselines import (
    RetrievalBaseline, ground_truth_sequence, render_spec, run_ground_truth, run_retrieval,
)
from procseq.eval.judge import Judge, JudgeError, JudgeScore, parse_judgement
from procseq.eval.metrics import FrameScore, SequenceScore, aggregate, score_sequence
from procseq.eval.report import Report, compare_markdown, load_report, markdown_table
from procseq.eval.runner import evaluate, evaluate_records, record_seed
from procseq.eval.scorer import score_folder, score_folders


def __getattr__(name: str) -> Any:
    # The CLIP scorer needs torch + transformers; import it only when asked for.
    if name in ("ClipScorer", "ClipSequenceScore"):
        from procseq.eval import clip_score

        return getattr(clip_score, name)
    raise AttributeError(f"module 'procseq.eval' has no attribute {name!r}")


__all__ = [
    "ClipScorer", "ClipSequenceScore", "FrameScore", "Judge", "JudgeError", "JudgeScore", "Report",
    "RetrievalBaseline", "SequenceScore", "aggregate", "compare_markdown", "evaluate", "evaluate_records",
    "ground_truth_sequence", "load_report", "markdown_table", "parse_judgement", "record_seed", "render_spec",
    "run_ground_truth", "run_retrieval", "score_folder", "score_folders", "score_sequence",
]
