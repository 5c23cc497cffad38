"""The synthetic corpus: determinism, the pixel checker against ground truth, holdout, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procseq.data.synthetic import DOMAIN_PLAN, REGISTRY, Spec, attribute_accuracy, generate, get_domain

DOMAINS = sorted(REGISTRY)
SEEDS = range(20)


def _mean_accuracy(name: str, seeds, frame_size: int = 32) -> float:
    d = get_domain(name)
    scores = []
    for seed in seeds:
        spec, frames = generate(name, seed, frame_size)
        scores += [d.accuracy(f, spec, i) for i, f in enumerate(frames)]
    return float(np.mean(scores))


def test_plan_has_nine_domains_with_roles() -> None:
    assert set(DOMAIN_PLAN) == set(REGISTRY) and len(REGISTRY) >= 9
    roles = [r.role for r in DOMAIN_PLAN.values()]
    assert roles.count("unseen") >= 1
    adapter_sizes = [r.train_size for r in DOMAIN_PLAN.values() if r.role == "adapter"]
    assert min(adapter_sizes) <= 50 and len(set(adapter_sizes)) > 1
    frame_counts = {get_domain(n).num_frames for n, r in DOMAIN_PLAN.items() if r.role == "base"}
    assert frame_counts == {4, 9}


@pytest.mark.parametrize("name", DOMAINS)
def test_deterministic_per_seed(name: str) -> None:
    s1, f1 = generate(name, 7)
    s2, f2 = generate(name, 7)
    assert s1 == s2
    assert all(np.array_equal(a, b) for a, b in zip(f1, f2))
    assert len(f1) == s1.num_frames == len(s1.captions) == get_domain(name).num_frames
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in f1)
    assert np.array_equal(get_domain(name).render(s1)[-1], f1[-1])  # re-render from the spec alone


@pytest.mark.parametrize("name", DOMAINS)
def test_checker_reads_ground_truth(name: str) -> None:
    d = get_domain(name)
    for seed in SEEDS:
        spec, frames = generate(name, seed)
        for i, f in enumerate(frames):
            read, exp = d.read(f, spec), d.expected(spec, i)
            assert set(read) == set(exp)
    assert _mean_accuracy(name, SEEDS) >= 0.99


@pytest.mark.parametrize("name", DOMAINS)
def test_checker_at_64px(name: str) -> None:
    assert _mean_accuracy(name, range(3), frame_size=64) >= 0.99


@pytest.mark.parametrize("name", DOMAINS)
def test_checker_tolerates_noise_and_blur(name: str) -> None:
    d = get_domain(name)
    rng = np.random.default_rng(0)
    scores = []
    for seed in range(5):
        spec, frames = generate(name, seed)
        for i, f in enumerate(frames):
            x = f.astype(np.float32)
            x = (4 * x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 8
            x = np.clip(x + rng.normal(0, 6, x.shape), 0, 255).astype(np.uint8)
            scores.append(d.accuracy(x, spec, i))
    assert np.mean(scores) >= 0.85


def _replace(obj, old, new):
    if isinstance(obj, dict):
        return {k: _replace(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace(v, old, new) for v in obj]
    return new if obj == old else obj


@pytest.mark.parametrize("name", DOMAINS)
def test_wrong_attribute_scores_lower(name: str) -> None:
    d = get_domain(name)
    for seed in range(5):
        spec, frames = generate(name, seed)
        last = spec.num_frames - 1
        truth = d.accuracy(frames[-1], spec, last)
        used = json.dumps(spec.attributes)
        wrong = None
        for part, axis in zip(spec.composition.split("+"), d.composition_axes):
            for alt in axis:
                if alt == part or f'"{alt}"' in used:
                    continue
                cand = Spec.from_dict({**spec.to_dict(), "attributes": _replace(spec.attributes, part, alt)})
                if d.expected(cand, last) != d.expected(spec, last):
                    wrong = cand
                    break
            if wrong:
                break
        assert wrong is not None
        n = len(d.expected(spec, last))
        assert d.accuracy(frames[-1], wrong, last) <= truth - 1 / n + 1e-9


@pytest.mark.parametrize("name", DOMAINS)
def test_steps_are_distinct_and_ordered(name: str) -> None:
    d = get_domain(name)
    spec, frames = generate(name, 3)
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            assert not np.array_equal(frames[i], frames[j]), f"frames {i} and {j} are identical"
    # the checker tells steps apart: a frame scored against another step's truth loses points somewhere
    order = np.random.default_rng(0).permutation(len(frames))
    shuffled = [d.accuracy(frames[k], spec, i) for i, k in enumerate(order)]
    assert np.mean(shuffled) < 1.0


@pytest.mark.parametrize("name", DOMAINS)
def test_invariant_keys_hold_in_ground_truth(name: str) -> None:
    d = get_domain(name)
    spec, _ = generate(name, 1)
    keys = d.invariant_keys(spec)
    assert set(keys) <= set(d.expected(spec, 0))
    for k in keys:
        seen = {str(d.expected(spec, i)[k]) for i in range(spec.num_frames) if d.expected(spec, i)[k] is not None}
        assert len(seen) <= 1, k


@pytest.mark.parametrize("name", DOMAINS)
def test_compositional_holdout(name: str) -> None:
    d = get_domain(name)
    held, all_keys = d.held_out(), set(d.compositions())
    assert held and held < all_keys
    assert 0.1 <= len(held) / len(all_keys) <= 0.3
    assert held == get_domain(name).held_out()
    for seed in range(40):
        assert generate(name, seed, split="train")[0].composition not in held
        assert generate(name, seed, split="test-seen")[0].composition not in held
        assert generate(name, seed, split="test-compositional")[0].composition in held


@pytest.mark.parametrize("name", DOMAINS)
def test_spec_round_trip(name: str) -> None:
    spec, _ = generate(name, 5, split="test-compositional")
    again = Spec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.split == "test-compositional" and again.seed == 5
    assert spec.prompt and all(spec.captions)


def test_attribute_accuracy() -> None:
    assert attribute_accuracy({"a": 1, "b": None}, {"a": 1, "b": 2}) == 0.5


def test_bad_input_raises_helpful_errors() -> None:
    with pytest.raises(ValueError, match="known domains: .*lego"):
        get_domain("woodwork")
    with pytest.raises(ValueError, match="multiple of 8"):
        generate("lego", 0, frame_size=16)
    with pytest.raises(ValueError, match="multiple of 8"):
        generate("lego", 0, frame_size=36)
    with pytest.raises(ValueError, match="test-seen"):
        generate("lego", 0, split="validation")
    with pytest.raises(ValueError, match="Unknown Spec fields"):
        Spec.from_dict({**generate("lego", 0)[0].to_dict(), "colour": "red"})
