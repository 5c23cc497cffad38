"""Every hostile case of tests/reliability/hostile.py: ok or one clean line, nothing lost, nothing half-written
(`python experiments/reliability.py` prints the same cases as counts for BENCHMARKS.md)."""

from __future__ import annotations

import pytest

from tests.reliability.hostile import cases, run_case

CASES = [pytest.param(c, id=f"{c.family}:{c.name}", marks=[pytest.mark.slow] if c.slow else []) for c in cases()]


@pytest.mark.parametrize("case", CASES)
def test_hostile_case(case, tiny_model_dir, tmp_path) -> None:
    outcome = run_case(case, tmp_path, tiny_model_dir)
    assert outcome.kind != "traceback", outcome.detail
    assert not outcome.lost, f"data lost: {outcome.lost}"
    assert not outcome.partial, f"left behind: {outcome.partial}"
    assert outcome.good, f"{outcome.kind}: {outcome.detail}"
