"""Insertion on a base that learnt known frames in place (procseq.json ``known_mode: inplace``, no known-frames
LoRA, as procseq-tiny v3): through the base in place, from both neighbours or from the whole sequence; the
records name no LoRA."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from procseq.pipelines.adaptive import AdaptiveConfig, adapt_frames
from procseq.pipelines.insertion import PipelineInterpolator, average_interpolator, fill, make_insertion, window
from procseq.pipelines.loading import load_pipeline

from .conftest import FakeExtractor, frame


@pytest.fixture(scope="module")
def inplace_dir(tiny_model_dir, tmp_path_factory):
    """The micro model with ``known_mode: inplace`` in its procseq.json (and no known_frames/ folder)."""
    out = tmp_path_factory.mktemp("inplace") / "model"
    shutil.copytree(tiny_model_dir, out)
    config = json.loads((out / "procseq.json").read_text())
    (out / "procseq.json").write_text(json.dumps({**config, "known_mode": "inplace"}))
    assert not (out / "known_frames").exists()
    return out


@pytest.fixture(scope="module")
def inplace_pipe(inplace_dir):
    pipe = load_pipeline(inplace_dir, device="cpu", adapters="none")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_base_runs_interpolation_in_place_without_a_lora(inplace_pipe, tiny_pipe) -> None:
    assert inplace_pipe.default_known_mode((0, 2), 3) == "inplace"
    assert tiny_pipe.default_known_mode((0, 2), 3) == "concat"  # the same model without the key
    interp = PipelineInterpolator(inplace_pipe, "a red circle", "painting", num_inference_steps=2)
    a = interp(frame(2, 16), frame(8, 16), ["sketch the outline", "add shading", "paint the details"], 3)
    assert a.size == (16, 16) and inplace_pipe.condition_lora is None
    assert interp.describe() == {"kind": "model", "context": "pair", "known_frames": [0, 2], "known_mode": "inplace",
                                 "condition_lora": None}


def test_the_sequence_context_knows_every_frame_but_the_gap(inplace_pipe) -> None:
    frames = [frame(v, 16) for v in (1, 2, 4, 5)]
    captions = ["sketch the outline", "block in flat colour", "paint the details", "add shading"]
    interp = PipelineInterpolator(inplace_pipe, "a red circle", "painting", context="sequence", num_inference_steps=2)
    a = fill(interp, frames, captions, 1, "add shading", seed=3)  # between frames 1 and 2: cell 2 of 5
    b = interp.between(frames, captions, 1, "add shading", seed=3)
    assert a.size == (16, 16) and np.array_equal(np.asarray(a), np.asarray(b))
    assert interp.describe() == {"kind": "model", "context": "sequence", "known_frames": [0, 1, 3, 4],
                                 "known_mode": "inplace", "condition_lora": None}
    long = [frame(v % 10, 16) for v in range(10)]  # 11 cells after the insertion, the micro model takes 9
    interp.between(long, [f"step {v}" for v in range(10)], 8, "new", seed=0)
    assert interp.last["known_frames"] == [0, 1, 2, 3, 4, 5, 6, 8]  # cells 2..10; the gap, cell 9, is the 8th


def test_window_holds_the_gap_within_the_limit() -> None:
    assert window(5, 2, 9) == (0, 5)
    assert window(11, 9, 9) == (2, 11) and window(11, 0, 9) == (0, 9) and window(11, 5, 9) == (1, 10)
    for n, gap in [(16, 1), (16, 14), (20, 10)]:
        start, stop = window(n, gap, 16)
        assert stop - start == min(n, 16) and start <= gap < stop and 0 <= start and stop <= n


def test_an_insertion_by_name(inplace_pipe) -> None:
    assert make_insertion("average", inplace_pipe, "a red circle", "painting") is average_interpolator
    assert make_insertion("model", inplace_pipe, "a red circle", "painting").context == "pair"
    assert make_insertion("sequence", inplace_pipe, "a red circle", "painting").context == "sequence"
    with pytest.raises(ValueError, match="average, model, sequence"):
        make_insertion("window", inplace_pipe, "a red circle", "painting")
    with pytest.raises(ValueError, match="pair, sequence"):
        PipelineInterpolator(inplace_pipe, "a red circle", "painting", context="window")


def test_fill_uses_the_neighbours_for_a_plain_interpolator() -> None:
    frames = [frame(v) for v in (0, 4, 8)]
    got = fill(average_interpolator, frames, ["a", "b", "c"], 1, "new", 0)
    assert np.array_equal(np.asarray(got), np.asarray(average_interpolator(frames[1], frames[2], [], 0)))


def test_adapt_records_the_base_alone(inplace_pipe) -> None:
    frames = [frame(v, 16) for v in (0, 1, 2, 6, 7)]  # a gap between frames 2 and 3
    interp = PipelineInterpolator(inplace_pipe, "a red circle", "painting", context="sequence", num_inference_steps=2)
    res = adapt_frames(frames, [f"step {i}" for i in range(5)], FakeExtractor(), interp,
                       AdaptiveConfig(k_add=1.0, delete=False, max_rounds=1))
    assert res.record["inserted"] == 1 and len(res.frames) == 6
    assert res.record["insertion"] == {"kind": "model", "context": "sequence", "known_frames": [0, 1, 2, 4, 5],
                                       "known_mode": "inplace", "condition_lora": None}


def test_adapt_cli_inserts_from_the_whole_sequence(inplace_dir, tmp_path) -> None:
    from procseq.cli import main
    from procseq.sequence import Sequence

    Sequence([frame(v, 16) for v in (0, 1, 2, 6, 7)], [f"step {i}" for i in range(5)], "a red circle",
             "painting").save(tmp_path / "seq")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["adapt", str(tmp_path / "seq"), "--out", str(out), "--model", str(inplace_dir),
                                    "--interpolator", "sequence", "--steps", "2", "--rule", "sequence",
                                    "--k-add", "0", "--no-delete", "--max-rounds", "1"])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "sequence.json").read_text())["adaptive"]
    assert rec["inserted"] >= 1 and rec["insertion"]["context"] == "sequence"
    assert rec["insertion"]["known_mode"] == "inplace" and rec["insertion"]["condition_lora"] is None
