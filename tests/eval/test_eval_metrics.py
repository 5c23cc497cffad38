"""Ground-truth metrics on the fake "fill" domain: perfect truth, and each failure lowers its metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from procseq.eval.metrics import PSNR_CAP, aggregate, psnr, score_sequence, ssim, step_distance, values_equal


def test_ground_truth_is_perfect(fill):
    spec = fill.make("red", "black")
    s = score_sequence(fill.render(spec), spec)
    assert s.attribute_acc == 1.0 and s.step_acc == 1.0 and s.consistency == 1.0
    assert s.psnr == PSNR_CAP and s.similarity == pytest.approx(1.0)
    assert all(s.attributes.values()) and len(s.frames) == 4


def test_domain_argument_and_pil_frames_of_another_size(fill):
    spec = fill.make("blue", "magenta")
    frames = [Image.fromarray(f).resize((64, 64), Image.Resampling.NEAREST) for f in fill.render(spec)]
    s = score_sequence(frames, spec, domain=fill)
    assert s.attribute_acc == 1.0 and s.step_acc == 1.0 and s.psnr > 30


def test_shuffled_steps_lower_step_accuracy(fill):
    spec = fill.make("green", "black")
    frames = fill.render(spec)
    s = score_sequence([frames[i] for i in (3, 2, 1, 0)], spec)
    assert s.step_acc <= 0.25
    assert s.psnr < score_sequence(frames, spec).psnr


def test_wrong_attribute_lowers_attribute_accuracy(fill):
    spec = fill.make("red", "black")
    wrong = fill.render(fill.make("yellow", "black"))
    s = score_sequence(wrong, spec)
    assert s.attributes == {"color": False, "level": True, "marker": True}
    assert s.attribute_acc == pytest.approx(2 / 3)


def test_inconsistent_invariant_lowers_consistency(fill):
    spec = fill.make("red", "black")
    frames = fill.render(spec)
    frames[1] = fill.render(fill.make("blue", "black"))[1]  # colour flips at step 1 and back
    s = score_sequence(frames, spec)
    # pairs: color (0,1),(1,2),(2,3); marker (2,3) -> 2 of 4 consistent
    assert s.consistency == pytest.approx(0.5)


def test_blank_frames_are_not_consistent(fill):
    spec = fill.make("red", "black")
    blank = [np.full((32, 32, 3), 255, np.uint8)] * 4
    s = score_sequence(blank, spec)
    assert s.consistency == 0.0 and s.attribute_acc < 0.5


def test_noise_lowers_fidelity(fill):
    spec = fill.make("blue", "black")
    frames = fill.render(spec)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (5, 40):
        noisy = [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]
        scores.append(score_sequence(noisy, spec))
    assert PSNR_CAP > scores[0].psnr > scores[1].psnr
    assert 1.0 > scores[0].similarity > scores[1].similarity >= 0.0


def test_wrong_frame_count_is_a_value_error(fill):
    spec = fill.make("red", "black")
    with pytest.raises(ValueError, match="num_frames=4"):
        score_sequence(fill.render(spec)[:3], spec)


def test_bad_frame_is_a_value_error(fill):
    spec = fill.make("red", "black")
    with pytest.raises(ValueError, match="RGB"):
        score_sequence([np.zeros((32, 32, 5), np.uint8)] * 4, spec)


def test_pixel_measures():
    a = np.zeros((16, 16, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    assert psnr(a, a) == PSNR_CAP and ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(16 * 16 * 3))
    assert step_distance(a, a) == 0.0 < step_distance(a, b)
    assert ssim(a, np.full_like(a, 255)) < 0.01


def test_values_equal():
    assert values_equal(1, 1.0) and values_equal([1, "a"], (1, "a")) and values_equal(None, None)
    assert not values_equal(None, "red") and not values_equal(True, 1) and not values_equal(2, 3)
    assert values_equal(np.int64(3), 3) and values_equal({"a": [1.0]}, {"a": [1]})


def test_aggregate_per_domain_and_overall(fill):
    spec = fill.make("red", "black")
    good = score_sequence(fill.render(spec), spec)
    bad = score_sequence(fill.render(fill.make("blue", "magenta")), spec)
    other = good.__class__(**{**good.to_dict(), "domain": "other", "consistency": None, "frames": []})
    agg = aggregate([good, bad, other])
    assert set(agg["domains"]) == {"fill", "other"}
    assert agg["domains"]["fill"]["n"] == 2
    assert agg["domains"]["fill"]["attribute_acc"] == pytest.approx((1 + bad.attribute_acc) / 2)
    assert agg["overall"]["n"] == 3 and agg["overall"]["n_consistency"] == 2
    assert agg["domains"]["other"]["consistency"] is None


def test_per_attribute_accuracy_is_in_the_summary_and_the_report(fill):
    from procseq.eval.metrics import per_attribute
    from procseq.eval.report import Report

    spec = fill.make("red", "black")
    good = score_sequence(fill.render(spec), spec)
    bad = score_sequence(fill.render(fill.make("blue", "magenta")), spec)
    agg = aggregate([good, bad])
    per_key = per_attribute(agg["domains"]["fill"])
    assert set(per_key) == set(good.attributes) and per_attribute(agg["overall"]) == per_key
    assert agg["domains"]["fill"] == pytest.approx(agg["domains"]["fill"])  # still a flat mapping of numbers
    for key, acc in per_key.items():
        assert acc == pytest.approx((good.attributes[key] + bad.attributes[key]) / 2)
    assert any(v < 1 for v in per_key.values())  # the wrong colour shows under its own key
    text = Report("run", [good, bad]).to_markdown()
    assert "Attribute accuracy per key" in text and all(k in text for k in per_key)
