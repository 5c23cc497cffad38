"""Any length: every domain renders each of its lengths with captions and a checker that agrees,
v1 lengths stay exactly as v1 drew them, held-out lengths never reach train, metrics at any length."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procseq.data.dataset import corpus_counts, load_split, make_corpus, sequence_length
from procseq.data.synthetic import REGISTRY, generate, get_domain
from procseq.data.synthetic.base import (
    HELD_OUT_LENGTHS, MAX_FRAMES, MIN_FRAMES, frame_stages, held_out_lengths, merge_captions, train_lengths,
)
from procseq.eval.metrics import score_sequence

DOMAINS = sorted(REGISTRY)


@pytest.mark.parametrize("name", DOMAINS)
def test_every_length_renders_and_checks(name: str) -> None:
    d = get_domain(name)
    assert d.lengths[0] == MIN_FRAMES and d.lengths[-1] <= MAX_FRAMES and d.num_frames in d.lengths
    for n in d.lengths:
        spec, frames = generate(name, 3, 32, "train", n)
        assert spec.num_frames == len(frames) == len(spec.captions) == n
        assert all(c.strip() for c in spec.captions)
        assert np.mean([d.accuracy(f, spec, i) for i, f in enumerate(frames)]) >= 0.99
        score = score_sequence(frames, spec)  # the truth scores perfectly at any length
        assert score.step_acc == 1.0 and score.attribute_acc == 1.0


def test_stretching_domains_reach_sixteen_and_others_say_why() -> None:
    assert get_domain("lego").lengths[-1] == get_domain("pixel_art").lengths[-1] == 16
    assert get_domain("sand_art").lengths[-1] == 8 and held_out_lengths("sand_art") == [7]
    spec, frames = generate("lego", 0, 32, "train", 16)
    assert len(spec.attributes["bricks"]) == 15 and "fifteen bricks" in spec.prompt
    with pytest.raises(ValueError, match="fixed stages"):
        generate("painting", 0, 32, "train", 12)
    with pytest.raises(ValueError, match="3 to 16"):
        generate("lego", 0, 32, "train", 17)


def test_default_length_is_v1() -> None:
    for name in DOMAINS:
        a, fa = generate(name, 5)
        b, fb = generate(name, 5, 32, "train", get_domain(name).num_frames)
        assert a == b and all(np.array_equal(x, y) for x, y in zip(fa, fb))
    spec, _ = generate("lego", 2)
    assert spec.num_frames == 9 and "eight bricks" in spec.prompt


def test_frame_stages_and_merged_captions() -> None:
    assert frame_stages(9, 3) == [0, 4, 8] and frame_stages(4, 4) == [0, 1, 2, 3]
    assert all(len(set(frame_stages(9, n))) == n for n in range(1, 10))
    assert merge_captions(["a", "b", "c", "d"], [0, 2, 3]) == ["a", "b and c", "d"]
    with pytest.raises(ValueError):
        frame_stages(4, 5)
    spec, _ = generate("painting", 0, 32, "train", 3)
    assert "horizon" in spec.captions[1] and "sun" in spec.captions[2]  # merged frames name every stage


def test_held_out_lengths_only_in_test_length() -> None:
    assert set(HELD_OUT_LENGTHS) == {7, 13}
    for name in DOMAINS:
        assert not set(train_lengths(name)) & set(HELD_OUT_LENGTHS)
        for i in range(30):
            assert sequence_length(0, name, "train", i, "any") in train_lengths(name)
            assert sequence_length(0, name, "train", i, "v1") == get_domain(name).num_frames
    assert held_out_lengths("lego") == [7, 13] and held_out_lengths("cooking") == []
    counts = corpus_counts(10, 2, lengths="any")
    assert "test-length" in counts and "cooking" not in counts["test-length"] and counts["test-length"]["lego"] == 2
    assert "test-length" not in corpus_counts(10, 2)


def test_any_length_corpus_on_disk(tmp_path) -> None:
    manifest = make_corpus(tmp_path / "c", per_domain=4, test_per_domain=1, adapter_sizes={"clay": 1, "sand_art": 1},
                           progress=False, lengths="any")
    assert manifest["lengths"] == "any"
    train = load_split(tmp_path / "c", "train")
    assert all(r["num_frames"] not in HELD_OUT_LENGTHS and len(r["frame_paths"]) == r["num_frames"] for r in train)
    assert len({r["num_frames"] for r in train}) > 2
    held = load_split(tmp_path / "c", "test-length")
    assert held and all(r["num_frames"] in HELD_OUT_LENGTHS for r in held)
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["held_out_lengths"] == [7, 13]


# sha256 (first 16 hex) of specs and frames at the default length, computed on 5fb362a (before any-length)
V1_FINGERPRINTS = {
    "clay": "8b39a1d9303fdef5", "cooking": "bd3a83094c9a9958", "emoji": "66d5cd32066a3c13", "lego": "4026f9f357318ef1",
    "line_drawing": "4d1477b1d6203ae7", "origami": "1df08757875a0914", "painting": "db27c91dab851046",
    "pixel_art": "66aa3c47305231ce", "sand_art": "1fe40ceb2e93b1f4",
}


def test_default_length_draws_exactly_what_v1_drew() -> None:
    import hashlib

    for name, expected in V1_FINGERPRINTS.items():
        h = hashlib.sha256()
        for split in ("train", "test-seen", "test-compositional"):
            for seed in range(6):
                spec, frames = generate(name, seed, 32, split)
                h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
                for f in frames:
                    h.update(f.tobytes())
        assert h.hexdigest()[:16] == expected, name
