"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest

from tests.eval.eval_fakes import FillDomain, register_fill


@pytest.fixture
def fill(monkeypatch: pytest.MonkeyPatch) -> FillDomain:
    """The fake "fill" domain, registered for the duration of one test."""
    return register_fill(monkeypatch)
