"""The scorer on every registered synthetic domain: truth is the ceiling, corruptions score lower."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from procseq.eval.metrics import score_sequence

synthetic = pytest.importorskip("procseq.data.synthetic")
DOMAINS = sorted(getattr(synthetic, "REGISTRY", {}))
if not DOMAINS:
    pytest.skip("no synthetic domain is registered yet", allow_module_level=True)


@pytest.mark.parametrize("name", DOMAINS)
def test_ground_truth_is_the_ceiling(name: str):
    scores = [score_sequence(frames, spec) for spec, frames in (synthetic.generate(name, s) for s in range(3))]
    assert np.mean([s.attribute_acc for s in scores]) >= 0.99
    assert np.mean([s.step_acc for s in scores]) >= 0.99
    assert all(s.consistency in (None, 1.0) for s in scores)


@pytest.mark.parametrize("name", DOMAINS)
def test_reversed_steps_score_lower_step_accuracy(name: str):
    spec, frames = synthetic.generate(name, 0)
    assert score_sequence(frames[::-1], spec).step_acc <= 0.5


@pytest.mark.parametrize("name", DOMAINS)
def test_shuffled_steps_score_lower_step_accuracy(name: str):
    spec, frames = synthetic.generate(name, 1)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frames))
    while np.any(order == np.arange(len(frames))):  # a derangement: no frame stays in place
        order = rng.permutation(len(frames))
    assert score_sequence([frames[i] for i in order], spec).step_acc <= 0.5


def _other_value(name: str, spec, key: str):
    for seed in range(1, 60):
        other, _ = synthetic.generate(name, seed)
        value = other.attributes.get(key)
        if value is not None and value != spec.attributes[key]:
            return value
    return None


@pytest.mark.parametrize("name", DOMAINS)
def test_one_wrong_attribute_scores_lower_attribute_accuracy(name: str):
    spec, frames = synthetic.generate(name, 0)
    domain = synthetic.get_domain(name)
    truth = score_sequence(frames, spec).attribute_acc
    final = domain.expected(spec, spec.num_frames - 1)
    read_keys = {k for k, v in final.items() if v is not None}  # keys visible in the finished artifact
    lowered, checked = [], []
    for key in sorted(spec.attributes):
        value = _other_value(name, spec, key)
        if value is None:
            continue
        wrong = dataclasses.replace(spec, attributes={**spec.attributes, key: value})
        acc = score_sequence(domain.render(wrong), spec).attribute_acc
        assert acc <= truth
        if any(k == key or k.endswith("." + key) for k in read_keys):
            checked.append(key)
            if acc < truth:
                lowered.append(key)
    assert checked, f"{name}: no attribute key is visible at the end under its own name"
    assert lowered == checked
