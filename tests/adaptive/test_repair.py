"""Adaptive steps as a user meets them (issue 27): on the shipped model and its training calibration, a missing
step is an insertion, a repeated step a deletion, a clean sequence no edit; captions in step order; what
sequence.json records for each edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from procseq.data.synthetic.base import get_domain
from procseq.models.features import PipelineFeatures
from procseq.models.loading import EMBEDDED_DIR
from procseq.pipelines.loading import load_pipeline
from procseq.pipelines.adaptive import AdaptiveConfig, adapt_frames, average_interpolator, merged_caption
from procseq.pipelines.adaptive_rule import CALIBRATION_FILE, Calibration, edit_lines, plan_caption
from procseq.pipelines.insertion import lora_applied

from .conftest import average, sequence


@pytest.fixture(scope="module")
def shipped():
    pipe = load_pipeline(None, device="cpu", adapters="none")
    pipe.set_progress_bar_config(disable=True)
    return pipe, PipelineFeatures(pipe), Calibration.load(EMBEDDED_DIR / CALIBRATION_FILE)


def truth(domain: str, seed: int) -> tuple[list[Image.Image], list[str]]:
    """A test-compositional sequence of `domain` (attribute combinations absent from training), rendered."""
    dom = get_domain(domain)
    spec = dom.sample(np.random.default_rng(seed), 32, "test-compositional")
    return [Image.fromarray(a) for a in dom.render(spec)], list(spec.captions)


def edits(res) -> list[dict]:
    return [a for rd in res.record["rounds"] for a in rd["actions"]]


def test_the_shipped_calibration_was_measured_on_the_training_split() -> None:
    cal = Calibration.load(EMBEDDED_DIR / CALIBRATION_FILE)
    assert cal.source["split"] == "train" and cal.extractor == "model"
    assert set(cal.domains) == {"painting", "line_drawing", "lego", "pixel_art", "cooking", "emoji"}
    for c in cal.domains.values():
        assert c.tau_del > 0 and c.train["clean_with_insertion"] <= 0.05 and c.train["drop_repaired"] >= 0.8


@pytest.mark.parametrize("domain, seed", [("painting", 0), ("lego", 0)])
def test_the_three_cases_on_the_shipped_model(shipped, domain, seed) -> None:
    _, features, cal = shipped
    frames, captions = truth(domain, seed)
    config = AdaptiveConfig(calibration=cal)
    run = lambda f, c: adapt_frames(f, c, features, average_interpolator, config, domain=domain, plan=captions)  # noqa: E731
    clean = run(frames, captions)
    assert clean.record["rule"] == "calibrated" and edits(clean) == [] and clean.frames == frames
    k = 4  # a missing step: one insertion, in that gap, captioned from the plan
    dropped = run(frames[:k] + frames[k + 1:], captions[:k] + captions[k + 1:])
    (act,) = edits(dropped)
    assert act["op"] == "insert" and act["between"] == [k - 1, k] and len(dropped.frames) == len(frames)
    assert act["caption"] == captions[k] and act["caption_from"] == "plan" and dropped.captions[k] == captions[k]
    assert act["d_add"] > act["tau_add"]
    repeated = run(frames[:k + 1] + [frames[k].copy()] + frames[k + 1:], captions[:k + 1] + [captions[k]] + captions[k + 1:])
    (act,) = edits(repeated)  # a repeated step: one deletion at that pair, nothing else removed
    assert act["op"] == "delete" and act["pair"] == [k, k + 1] and act["d_del"] < act["tau_del"]
    assert len(repeated.frames) == len(frames) and repeated.captions == captions


def test_a_deletion_of_the_earlier_frame_merges_captions_in_step_order(fake) -> None:
    frames, _ = sequence([0, 1, 2, 3, 4, 4])
    captions = ["base", "first brick", "second brick", "third brick", "place the seventh brick",
                "place the eighth brick"]
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(alpha=0.5, beta=0.5, k_add=1.5, k_del=1.5))
    (act,) = edits(res)
    assert act["index"] == 4 and res.origin[-1] == 5  # the earlier frame goes: the finished artifact stays
    assert res.captions[-1] == "place the seventh brick; place the eighth brick" == act["caption"]
    assert merged_caption("Step 7: place the seventh brick", "Step 8: place the eighth brick") == \
        "Step 7: place the seventh brick; place the eighth brick"


def test_each_edit_records_why(fake) -> None:
    frames, captions = sequence([0, 1, 2, 4, 5, 6])
    res = adapt_frames(frames, captions, fake, average, AdaptiveConfig(alpha=0.5, beta=0.5, k_add=1.5, k_del=1.5))
    (act,) = edits(res)
    assert act["rule"] == "sequence" and act["combined"] > act["tau_add"] and "tau_add" in act["reason"]
    assert res.record["rule"] == "sequence" and res.record["insertion"] == {"kind": "average"}
    (line,) = edit_lines(res.record)
    assert line.startswith("round 1: inserted a frame between frames 3 and 4: D ") and "sequence rule" in line


def test_plan_caption_is_the_step_between_the_neighbours() -> None:
    plan = ["Step 1: sketch", "Step 2: wash the sky", "Step 3: paint the ground", "Step 4: add the sun"]
    assert plan_caption(plan, "Step 1: sketch", "Step 3: paint the ground") == "Step 2: wash the sky"
    assert plan_caption(plan, "Step 1: sketch", "Step 2: wash the sky") is None  # nothing missing there
    assert plan_caption(plan, "something else", "Step 3: paint the ground") is None
    assert plan_caption(None, "a", "b") is None


def test_a_last_cell_lora_switched_off_is_not_named() -> None:
    lora = {"path": "known_frames/pytorch_lora_weights.safetensors", "mode": "concat"}
    assert lora_applied({"known_mode": "inplace"}, lora) is None  # v2: interpolation runs in place, LoRA off
    assert lora_applied({"known_mode": "concat"}, lora) == lora["path"]
    assert lora_applied({"known_mode": "inplace"}, {**lora, "mode": "inplace"}) == lora["path"]
    assert lora_applied({}, lora) is None and lora_applied({"known_mode": "concat"}, None) is None


def test_adapt_cli_prints_and_records_each_edit(shipped, tmp_path) -> None:
    from procseq.cli import main
    from procseq.sequence import Sequence

    frames, captions = truth("painting", 0)
    k = 4
    Sequence(frames[:k] + frames[k + 1:], captions[:k] + captions[k + 1:], "a painting", "painting",
             meta={"plan": {"title": "a painting", "domain": "painting", "captions": captions}}).save(tmp_path / "seq")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["adapt", str(tmp_path / "seq"), "--out", str(out), "--interpolator", "average"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()  # the results; notices go to stderr
    assert len(lines) == 2 and lines[0].startswith("round 1: inserted a frame between frames 4 and 5: D_add")
    assert "calibrated rule" in lines[0] and "1 inserted, 0 deleted" in lines[1]
    record = json.loads((out / "sequence.json").read_text())
    rec = record["adaptive"]
    (act,) = rec["rounds"][0]["actions"]
    assert rec["rule"] == "calibrated" and rec["settings"]["calibration"]["split"] == "train"
    assert {"global", "local", "semantic", "order", "d_add", "d_del", "tau_add", "tau_del", "add_weights",
            "reason", "caption", "caption_from"} <= set(act)
    assert record["captions"][k] == captions[k] and record["num_frames"] == len(frames)
    assert rec["insertion"] == {"kind": "average_interpolator"}  # no LoRA claimed


def test_calibration_refuses_a_test_split(tmp_path) -> None:
    from procseq.eval.adaptive_calibration import calibrate

    with pytest.raises(ValueError, match="training split only"):
        calibrate(tmp_path, None, split="test-compositional")


def test_auto_insertion_is_the_one_the_training_split_chose(shipped) -> None:
    from procseq.cli.adapt import make_interpolator
    from procseq.pipelines.insertion import PipelineInterpolator

    pipe, _, cal = shipped
    for domain, c in cal.domains.items():
        assert c.insertion in ("average", "model", "sequence") and {"fill_average", "fill_model"} <= set(c.train)
        got = make_interpolator("auto", pipe, "a thing", domain, cal)
        assert (got is average_interpolator) == (c.insertion == "average")
        assert isinstance(got, PipelineInterpolator) == (c.insertion in ("model", "sequence"))
        if c.insertion != "average":  # a calibration that compared the whole-sequence call (v3) may choose it
            assert got.context == {"model": "pair", "sequence": "sequence"}[c.insertion]
    assert make_interpolator("auto", pipe, "a thing", "clay", cal) is average_interpolator  # not calibrated
    assert make_interpolator("auto", pipe, "a thing", "lego", None) is average_interpolator


def test_adapt_never_replaces_its_own_input(tmp_path) -> None:
    """``adapt SEQ --out SEQ --overwrite`` (or a folder holding it) is refused before any work; SEQ is untouched."""
    from procseq.cli import main
    from procseq.sequence import Sequence

    frames, captions = truth("painting", 0)
    Sequence(frames, captions, "a painting", "painting").save(tmp_path / "seq")
    (tmp_path / "seq" / ".procseq-output").write_text("written by procseq\n")  # even a folder procseq wrote
    before = {p.name: p.read_bytes() for p in (tmp_path / "seq").iterdir()}
    for out in (tmp_path / "seq", tmp_path):
        result = CliRunner().invoke(main, ["adapt", str(tmp_path / "seq"), "--out", str(out), "--overwrite",
                                           "--interpolator", "average"])
        assert result.exit_code != 0 and "would replace the input" in result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "seq").iterdir()} == before
