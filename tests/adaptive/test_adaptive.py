"""Adaptive steps on constructed cases: insertion, deletion, thresholds, fixed point, budgets, captions, records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procseq.pipelines.adaptive import (
    AdaptiveConfig,
    adapt_frames,
    adapt_sequence,
    inserted_caption,
    merged_caption,
    nearest_patch_distance,
    pair_differences,
    renumber,
    thresholds,
)
from procseq.sequence import Sequence

from .conftest import average, progress, sequence

IMAGE_ONLY = dict(alpha=0.5, beta=0.5, k_add=1.5, k_del=1.5)


def values(frames) -> list[float]:
    return [progress(f) for f in frames]


def test_thresholds_follow_the_formula() -> None:
    d = np.array([1.0, 2.0, 3.0, 10.0])
    th = thresholds(d, k_add=1.5, k_del=0.5)
    mu, sigma = d.mean(), d.std()
    assert th.mu == pytest.approx(mu) and th.sigma == pytest.approx(sigma)
    assert th.tau_add == pytest.approx(mu + 1.5 * sigma) and th.tau_del == pytest.approx(mu - 0.5 * sigma)


def test_differences_combine_the_three_terms_on_one_scale(fake) -> None:
    frames, captions = sequence([0, 1, 2, 4])
    diff = pair_differences(frames, captions, fake, (0.5, 0.5, 0.0))
    assert diff.global_.shape == diff.local.shape == diff.semantic.shape == diff.combined.shape == (3,)
    assert np.all(diff.semantic == 0) and diff.global_[2] > 3 * diff.global_[0]
    expected = 0.5 * diff.global_ / diff.global_.mean() + 0.5 * diff.local / diff.local.mean()
    np.testing.assert_allclose(diff.combined, expected, rtol=1e-6)


def test_nearest_patch_distance_is_zero_for_permuted_patches() -> None:
    import torch

    a = torch.randn(5, 7)
    assert nearest_patch_distance(a, a[torch.randperm(5)]) == pytest.approx(0.0, abs=1e-6)
    eye = torch.eye(7)
    assert nearest_patch_distance(eye[:3], eye[3:6]) == pytest.approx(1.0)  # no patch of one is in the other
    assert nearest_patch_distance(eye[:3], eye[1:4]) == pytest.approx(1 / 3)  # one new patch of three


def test_a_dropped_step_is_inserted_and_the_fixed_point_reached(fake) -> None:
    frames, captions = sequence([0, 1, 2, 4, 5, 6])
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    assert values(res.frames) == [0, 1, 2, 3, 4, 5, 6]
    assert res.origin == [0, 1, 2, None, 3, 4, 5]
    assert res.captions[3] == inserted_caption("step 4") and len(res.captions) == 7
    rec = res.record
    assert rec["stopped"] == "fixed_point" and rec["inserted"] == 1 and rec["deleted"] == 0
    act = rec["rounds"][0]["actions"]
    assert [(a["op"], a["between"], a["index"]) for a in act] == [("insert", [2, 3], 3)]
    th = rec["rounds"][0]["thresholds"]
    assert act[0]["combined"] > th["tau_add"] and set(act[0]) >= {"global", "local", "semantic", "combined"}
    assert rec["rounds"][-1]["actions"] == []  # the last round changed nothing
    json.dumps(rec)  # the record is JSON


def test_a_duplicate_is_deleted_and_its_caption_merged(fake) -> None:
    frames, captions = sequence([0, 1, 2, 2, 3, 4])
    captions[3] = "repeat the second coat"
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    assert values(res.frames) == [0, 1, 2, 3, 4] and res.origin == [0, 1, 2, 4, 5]
    assert res.captions[2] == merged_caption("step 2", "repeat the second coat") == "step 2; repeat the second coat"
    act = res.record["rounds"][0]["actions"]
    assert [(a["op"], a["pair"], a["index"]) for a in act] == [("delete", [2, 3], 3)]
    assert act[0]["combined"] < res.record["rounds"][0]["thresholds"]["tau_del"]
    assert res.record["stopped"] == "fixed_point"


def test_deletion_keeps_the_finished_artifact(fake) -> None:
    frames, captions = sequence([0, 1, 2, 3, 4, 4])
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    assert res.origin[-1] == 5 and values(res.frames) == [0, 1, 2, 3, 4]


def test_an_even_sequence_is_already_a_fixed_point(fake) -> None:
    frames, captions = sequence([0, 1, 2, 3])
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    assert res.frames == frames and res.record["stopped"] == "fixed_point" and len(res.record["rounds"]) == 1


def test_the_round_budget_stops_it(fake) -> None:
    frames, captions = sequence([0, 1, 2, 6, 7, 8])  # a gap of 4: halved in one round
    config = dict(IMAGE_ONLY, k_add=0.5, k_del=3.0)
    one = adapt_frames(frames, captions, fake, average, AdaptiveConfig(max_rounds=1, **config))
    assert values(one.frames) == [0, 1, 2, 4, 6, 7, 8] and one.record["stopped"] == "budget"
    more = adapt_frames(frames, captions, fake, average, AdaptiveConfig(max_rounds=6, **config))
    assert values(more.frames) == [0, 1, 2, 4, 6, 7, 8] and more.record["stopped"] == "fixed_point"


def test_thresholds_hold_across_rounds_unless_recomputed(fake) -> None:
    frames, captions = sequence([0, 1, 2, 6, 7, 8])
    config = dict(IMAGE_ONLY, k_add=0.5, k_del=3.0, max_rounds=6)
    fixed = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**config))
    th = [r["thresholds"] for r in fixed.record["rounds"]]
    assert len(th) == 2 and th[0] == th[1] and fixed.record["rounds"][0]["scales"] == fixed.record["rounds"][1]["scales"]
    again = adapt_frames(frames, captions, fake, average, AdaptiveConfig(recompute=True, **config))
    assert values(again.frames) == list(range(9)) and again.record["stopped"] == "fixed_point"
    assert len(again.record["rounds"]) == 4 and again.record["rounds"][0]["thresholds"] != again.record["rounds"][1][
        "thresholds"]


@pytest.mark.parametrize("vals, limits", [
    ([0, 1, 2, 4, 5, 6], dict(max_frames=6)),  # an insertion is wanted, no room for it
    ([0, 1, 2, 2, 3, 4], dict(min_frames=6)),  # a deletion is wanted, no frame may go
])
def test_the_frame_range_is_never_left(fake, vals, limits) -> None:
    frames, captions = sequence(vals)
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY, **limits))
    assert values(res.frames) == vals and res.record["stopped"] == "frame_limit"


def test_never_below_two_frames(fake) -> None:
    frames, captions = sequence([0, 0, 1])
    res = adapt_frames(frames, captions, fake, None, AdaptiveConfig(**dict(IMAGE_ONLY, k_del=0.0), insert=False))
    assert values(res.frames) == [0, 1] and res.record["stopped"] == "fixed_point"


def test_same_inputs_same_decisions(fake) -> None:
    frames, captions = sequence([0, 1, 3, 4, 4, 5])
    a = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    b = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert strip(a.record) == strip(b.record) and values(a.frames) == values(b.frames)


def test_insert_only_and_delete_only(fake) -> None:
    frames, captions = sequence([0, 1, 2, 4, 5, 6])
    assert adapt_frames(frames, captions, fake, None, AdaptiveConfig(insert=False, **IMAGE_ONLY)).frames == frames
    frames, captions = sequence([0, 1, 1, 2, 3, 4, 5])
    assert adapt_frames(frames, captions, fake, average, AdaptiveConfig(delete=False, **IMAGE_ONLY)).frames == frames
    dele = adapt_frames(frames, captions, fake, None, AdaptiveConfig(insert=False, **IMAGE_ONLY))
    assert dele.record["deleted"] == 1 and values(dele.frames) == [0, 1, 2, 3, 4, 5]


def test_captions_are_renumbered() -> None:
    assert renumber(["Step 1: sketch", "Step 1: sketch more", "2. paint", "finish"]) == \
        ["Step 1: sketch", "Step 2: sketch more", "3. paint", "finish"]
    assert renumber(["Step 1: a", inserted_caption("Step 2: paint the sky"), "Step 2: paint the sky"]) == \
        ["Step 1: a", "Step 2: paint the sky (first part)", "Step 3: paint the sky"]


def test_numbered_captions_stay_consistent_after_insertion(fake) -> None:
    frames, _ = sequence([0, 1, 2, 4, 5])
    captions = [f"Step {k + 1}: action {k}" for k in range(5)]
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    assert [c.split(":")[0] for c in res.captions] == [f"Step {k}" for k in range(1, 7)]
    assert res.captions[3] == "Step 4: action 3 (first part)" and res.captions[4] == "Step 5: action 3"


def test_adapt_sequence_updates_plan_and_meta(fake) -> None:
    frames, captions = sequence([0, 1, 2, 4, 5])
    seq = Sequence(frames, captions, "a thing", "painting", meta={"seed": 3})
    out = adapt_sequence(seq, fake, average, AdaptiveConfig(**IMAGE_ONLY))
    assert out.num_frames == 6 and out.meta["seed"] == 3 and out.meta["adaptive"]["num_frames_out"] == 6
    assert out.meta["plan"]["captions"] == out.captions and out.meta["plan"]["meta"]["adapted"] is True


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_frames=1), "at least 2"), (dict(min_frames=1), "at least 2"), (dict(max_rounds=0), "max_rounds"),
    (dict(alpha=0.7, beta=0.5), r"alpha \+ beta"), (dict(alpha=-0.1), "alpha"), (dict(k_add=-1), "k_add"),
])
def test_bad_settings_say_what_to_change(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveConfig(**kwargs)


def test_bad_sequences_say_what_to_change(fake) -> None:
    frames, captions = sequence([0, 1, 2])
    with pytest.raises(ValueError, match="one caption per frame"):
        adapt_frames(frames, captions[:2], fake, average)
    with pytest.raises(ValueError, match="at least 2 frames"):
        adapt_frames(frames[:1], captions[:1], fake, average)
    with pytest.raises(ValueError, match="interpolator"):
        adapt_frames(frames, captions, fake, None)
    with pytest.raises(ValueError, match="one size"):
        adapt_frames([frames[0], frames[1].resize((4, 4))], captions[:2], fake, average)


def test_the_average_interpolator_blends_the_neighbours() -> None:
    from procseq.pipelines.adaptive import average_interpolator

    from .conftest import frame

    assert progress(average_interpolator(frame(2), frame(6), ["a", "b", "c"], 0)) == 4
