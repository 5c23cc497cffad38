"""The adapter experiment's statistics: bootstrap intervals, paired differences, the tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.adapters import (
    bootstrap_interval, main, method_route, paired_difference, score_file, tables,
)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n() -> None:
    assert bootstrap_interval([0.5] * 10) == (0.5, 0.5, 0.5)
    rng = np.random.default_rng(0)
    small, large = rng.integers(0, 2, 50), rng.integers(0, 2, 800)
    m, lo, hi = bootstrap_interval(small)
    assert lo <= m <= hi and bootstrap_interval(small) == (m, lo, hi)  # deterministic
    _, lo2, hi2 = bootstrap_interval(large)
    assert hi2 - lo2 < (hi - lo) / 2  # ~1/sqrt(n)
    with pytest.raises(ValueError, match="No values"):
        bootstrap_interval([])


def test_paired_difference_uses_common_records_only() -> None:
    a = {f"r{i}": i / 10 + 0.1 for i in range(10)}
    b = {f"r{i}": i / 10 for i in range(12)}
    mean, low, high, n = paired_difference(a, b)
    assert n == 10 and mean == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_routes_and_tables(tmp_path, capsys) -> None:
    assert method_route("lora-per-domain", "origami") == ("lora-clay", {"clay": 1.0})
    assert method_route("asymmetric-mix", "clay") is None and method_route("masked", "clay") == ("masked", None)
    rng = np.random.default_rng(1)
    for method, p in (("lora", 0.3), ("masked-rows", 0.8)):
        path = score_file(tmp_path, method, "test-seen", "clay")
        path.parent.mkdir(parents=True)
        rows = [{"id": f"c{i}", "attribute_acc": float(rng.random() < p), "step_acc": 0.5, "psnr": 12.0,
                 "similarity": 0.4, "consistency": None} for i in range(100)]
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = tables(tmp_path)
    assert "| clay | masked LoRA, output rows fixed (ProcessMaker) | 100 |" in text
    diff = next(line for line in text.splitlines() if line.startswith("| clay | masked LoRA, output rows fixed")
                and "diff" not in line and line.count("[") == 2 and "+" in line)
    assert diff.split("|")[4].strip().endswith("*")  # 0.8 vs 0.3 is outside noise
    assert diff.split("|")[5].strip().startswith("+0.000 [+0.000, +0.000]")  # equal step acc: no star
    with pytest.raises(SystemExit):
        main(["run", "--runs", str(tmp_path), "--methods", "dora"])
