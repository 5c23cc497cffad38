"""The shared bootstrap intervals (procseq.eval.intervals): a known difference is found, no difference contains 0."""

from __future__ import annotations

import numpy as np
import pytest

from procseq.eval.intervals import bootstrap_interval, paired_difference


def test_constant_paired_difference_is_its_own_interval() -> None:
    rng = np.random.default_rng(0)
    base = {f"r{i}": float(x) for i, x in enumerate(rng.random(40))}
    shifted = {k: v + 0.25 for k, v in base.items()}
    mean, low, high, n = paired_difference(shifted, base)
    assert n == 40
    assert mean == pytest.approx(0.25) and low == pytest.approx(0.25) and high == pytest.approx(0.25)
    mean, low, high, _ = paired_difference(base, shifted)  # the sign follows a - b
    assert mean == pytest.approx(-0.25) and high == pytest.approx(-0.25)


def test_noise_around_zero_contains_zero_and_a_real_shift_excludes_it() -> None:
    rng = np.random.default_rng(1)
    base = {f"r{i}": float(x) for i, x in enumerate(rng.integers(0, 2, 200))}
    noisy = {k: v + float(e) for (k, v), e in zip(base.items(), rng.normal(0.0, 0.1, 200))}
    mean, low, high, _ = paired_difference(noisy, base)
    assert low < 0.0 < high and high - low < 0.05
    better = {k: v + 0.1 for k, v in noisy.items()}
    _, low, high, _ = paired_difference(better, base)
    assert 0.0 < low < 0.1 < high  # a shift of 0.1 over noise of 0.1: inside the interval, 0 outside


def test_pairs_by_record_and_skips_unscored_ones() -> None:
    a = {"r0": 1.0, "r1": None, "r2": 0.0, "only-a": 5.0}
    b = {"r0": 0.0, "r1": 1.0, "r2": 0.0, "only-b": -5.0}
    mean, low, high, n = paired_difference(a, b)
    assert n == 2 and mean == pytest.approx(0.5) and low == pytest.approx(0.0) and high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="share no scored record"):
        paired_difference({"x": 1.0}, {"y": 1.0})


def test_level_widens_and_seed_fixes_the_interval() -> None:
    x = np.random.default_rng(2).random(60)
    _, lo90, hi90 = bootstrap_interval(x, level=0.90)
    _, lo99, hi99 = bootstrap_interval(x, level=0.99)
    assert lo99 < lo90 < hi90 < hi99
    assert bootstrap_interval(x, seed=3) == bootstrap_interval(x, seed=3)
