"""The ReCraft attribute agreement: perfect on the true process, low on blank frames."""

from __future__ import annotations

import numpy as np
import pytest

from procseq.data.synthetic import generate
from procseq.eval.metrics import attribute_agreement


@pytest.mark.parametrize("domain", ["painting", "lego", "emoji"])
def test_agreement_of_the_true_process_is_perfect(domain: str) -> None:
    spec, frames = generate(domain, 7, 32, "test-seen")
    hits, checks = attribute_agreement(frames, spec)
    assert checks > 0 and hits == checks
    blank = [np.full_like(f, 255) for f in frames[:-1]] + [frames[-1]]
    worse, same_checks = attribute_agreement(blank, spec)
    assert same_checks == checks and worse < hits
