"""Reference points for every table: the ground truth itself and nearest-training-sequence retrieval.

Both write sequence folders and are scored by the same :func:`procseq.eval.score_folders` as any
model. The ground truth renders each record's spec, so it measures the checker's ceiling (it should
score ~1.0 attribute and step accuracy). Retrieval answers "how far does memorising the training set
get you": for a test prompt it returns the frames of the training sequence of the same domain whose
prompt is most similar by TF-IDF cosine over words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence as SequenceABC
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from procseq.eval.metrics import domain_of
from procseq.eval.report import Report
from procseq.eval.runner import evaluate, evaluate_records
from procseq.eval.scorer import spec_from_dict
from procseq.sequence import Sequence

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric word tokens of `text`."""
    return _WORD.findall(text.lower())


def render_spec(spec: Any) -> list[Image.Image]:
    """The ground-truth frames of a synthetic spec (a ``Spec`` or its ``to_dict()``), as PIL images."""
    if isinstance(spec, Mapping):
        spec = spec_from_dict(spec)
    return [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in domain_of(spec).render(spec)]


def ground_truth_sequence(spec: Any) -> Sequence:
    """The ground truth as a :class:`Sequence` (frames, captions, prompt, domain; spec in ``meta``)."""
    if isinstance(spec, Mapping):
        spec = spec_from_dict(spec)
    return Sequence(frames=render_spec(spec), captions=list(spec.captions), prompt=spec.prompt,
                    domain=spec.domain, meta={"spec": spec.to_dict(), "baseline": "ground truth"})


def run_ground_truth(
    records: SequenceABC[Mapping[str, Any]], out_dir: str | Path, n: int | None = None,
    progress: bool = True, name: str = "ground truth",
) -> Report:
    """Evaluate the ground truth (render each record's spec) into `out_dir`; the checker's ceiling."""
    return evaluate_records(lambda record, seed: ground_truth_sequence(record["spec"]), records, out_dir,
                            n=n, progress=progress, name=name, meta={"baseline": "ground truth"})


def resample(frames: list[Any], num_frames: int) -> list[Any]:
    """Pick `num_frames` frames evenly spaced over `frames` (first and last kept)."""
    if len(frames) == num_frames:
        return list(frames)
    idx = np.rint(np.linspace(0, len(frames) - 1, num_frames)).astype(int)
    return [frames[i] for i in idx]


class RetrievalBaseline:
    """Nearest training sequence by prompt, usable directly as an ``evaluate`` ``generate_fn``.

    Similarity: cosine between TF-IDF vectors of word counts (:func:`words`), with the smooth IDF
    ``ln((1 + N) / (1 + df)) + 1`` computed over the N training prompts of the query's domain. Ties
    go to the earliest training record, so retrieval is deterministic and ignores the seed.

    Args:
        train_records: training records (``load_split(dir, "train")``): prompt, domain, spec.
        cross_domain_fallback: for a domain absent from `train_records`, search all training
            records instead of raising (useful on never-trained domains).
    """

    def __init__(self, train_records: SequenceABC[Mapping[str, Any]], cross_domain_fallback: bool = False):
        if not train_records:
            raise ValueError("Retrieval needs training records; pass load_split(data_dir, 'train').")
        self.records = list(train_records)
        self.cross_domain_fallback = cross_domain_fallback
        self._index: dict[str | None, tuple[list[int], list[Counter], dict[str, float]]] = {}
        by_domain: dict[str | None, list[int]] = {None: list(range(len(self.records)))}
        for i, r in enumerate(self.records):
            by_domain.setdefault(str(r["domain"]), []).append(i)
        for domain, idx in by_domain.items():
            counts = [Counter(words(str(self.records[i]["prompt"]))) for i in idx]
            df = Counter(t for c in counts for t in c)
            idf = {t: math.log((1 + len(idx)) / (1 + d)) + 1.0 for t, d in df.items()}
            self._index[domain] = (idx, counts, idf)

    @staticmethod
    def _vector(counts: Counter, idf: Mapping[str, float], default_idf: float) -> dict[str, float]:
        return {t: c * idf.get(t, default_idf) for t, c in counts.items()}

    def scores(self, prompt: str, domain: str) -> list[tuple[int, float]]:
        """(training record index, cosine similarity) for every candidate of `domain`, in record order."""
        key: str | None = domain
        if domain not in self._index:
            if not self.cross_domain_fallback:
                raise ValueError(
                    f"No training sequence of domain {domain!r} to retrieve from (known: "
                    f"{sorted(k for k in self._index if k)}); pass cross_domain_fallback=True to "
                    "search every domain."
                )
            key = None
        idx, counts, idf = self._index[key]
        default_idf = math.log(1 + len(idx)) + 1.0
        q = self._vector(Counter(words(prompt)), idf, default_idf)
        qn = math.sqrt(sum(v * v for v in q.values()))
        out = []
        for i, c in zip(idx, counts):
            d = self._vector(c, idf, default_idf)
            dn = math.sqrt(sum(v * v for v in d.values()))
            dot = sum(v * d.get(t, 0.0) for t, v in q.items())
            out.append((i, dot / (qn * dn) if qn and dn else 0.0))
        return out

    def nearest(self, prompt: str, domain: str) -> Mapping[str, Any]:
        """The training record of `domain` whose prompt is most similar to `prompt`."""
        best_i, best_s = -1, -1.0
        for i, s in self.scores(prompt, domain):
            if s > best_s:
                best_i, best_s = i, s
        return self.records[best_i]

    def __call__(self, prompt: str, domain: str, num_frames: int, seed: int = 0) -> list[Image.Image]:
        """The retrieved training sequence's frames, resampled to `num_frames` if needed."""
        return resample(render_spec(self.nearest(prompt, domain)["spec"]), num_frames)


def run_retrieval(
    train_records: SequenceABC[Mapping[str, Any]], records: SequenceABC[Mapping[str, Any]],
    out_dir: str | Path, n: int | None = None, progress: bool = True, name: str = "retrieval",
    cross_domain_fallback: bool = False,
) -> Report:
    """Evaluate nearest-training-sequence retrieval on `records` into `out_dir`."""
    return evaluate(RetrievalBaseline(train_records, cross_domain_fallback), records, out_dir, n=n,
                    progress=progress, name=name, meta={"baseline": "retrieval (TF-IDF cosine over words)"})


__all__ = ["RetrievalBaseline", "ground_truth_sequence", "render_spec", "resample", "run_ground_truth",
           "run_retrieval", "words"]
