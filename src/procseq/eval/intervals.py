"""Bootstrap intervals for evaluation figures: the mean of per-sequence scores, and the paired difference of two
runs that generated the same records with the same seeds (resampling records, each record's two scores kept
together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def bootstrap_interval(values: Sequence[float] | np.ndarray, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of `values` and its percentile bootstrap interval at `level`."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("No values to bootstrap; evaluate at least one sequence.")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return float(x.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_difference(a: Mapping[str, float | None], b: Mapping[str, float | None], resamples: int = 2000,
                      level: float = 0.95, seed: int = 0) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of ``a - b`` over the record ids both score (a paired bootstrap); a record whose
    score is None in either run (a metric that does not apply to it) is left out."""
    common = sorted(k for k in set(a) & set(b) if a[k] is not None and b[k] is not None)
    if not common:
        raise ValueError("The two runs share no scored record; generate the same records (same split, n and "
                         "domains) for both.")
    mean, low, high = bootstrap_interval([a[k] - b[k] for k in common], resamples, level, seed)
    return mean, low, high, len(common)


__all__ = ["bootstrap_interval", "paired_difference"]
