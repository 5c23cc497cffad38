"""One scorer for everything: folder round trip, evaluate(), baselines, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.eval.eval_fakes import fill_record
from procseq.eval.baselines import RetrievalBaseline, ground_truth_sequence, resample, run_ground_truth, run_retrieval
from procseq.eval.report import compare_markdown, load_report, markdown_table
from procseq.eval.runner import evaluate, record_seed
from procseq.eval.scorer import find_sequence_folders, score_folders
from procseq.sequence import Sequence


@pytest.fixture
def records(fill):
    test = [fill_record(fill, c, m, split="test", seed=i)
            for i, (c, m) in enumerate([("red", "black"), ("blue", "magenta"), ("yellow", "black")])]
    train = [fill_record(fill, c, m, seed=10 + i)
             for i, (c, m) in enumerate([("green", "black"), ("red", "magenta"), ("blue", "magenta")])]
    return train, test


def test_score_folders_round_trip(fill, tmp_path):
    spec = fill.make("red", "black")
    ground_truth_sequence(spec).save(tmp_path / "a")
    wrong = fill.render(fill.make("blue", "black"))
    Sequence([Image.fromarray(f) for f in wrong], spec.captions, spec.prompt, "fill").save(
        tmp_path / "b", extra={"spec": spec.to_dict()})
    report = score_folders(tmp_path, name="mixed")
    assert [s.name for s in report.scores] == ["a", "b"]
    assert report.scores[0].attribute_acc == 1.0 and report.scores[1].attribute_acc < 1.0
    assert score_folders(tmp_path / "a").scores[0].step_acc == 1.0
    assert report.summary["domains"]["fill"]["n"] == 2


def test_score_folders_errors(fill, tmp_path):
    with pytest.raises(FileNotFoundError, match="Sequence.save"):
        score_folders(tmp_path)
    spec = fill.make("red", "black")
    Sequence([Image.new("RGB", (8, 8))] * 4, spec.captions, spec.prompt, "fill").save(tmp_path / "x")
    with pytest.raises(ValueError, match="no 'spec'"):
        score_folders(tmp_path)


def test_evaluate_writes_sequences_and_reports(fill, records, tmp_path):
    _, test = records
    calls = []

    def generate(prompt: str, domain: str, num_frames: int, seed: int) -> list[Image.Image]:
        calls.append((prompt, domain, num_frames, seed))
        return [Image.new("RGB", (48, 48), (255, 255, 255))] * num_frames

    report = evaluate(generate, test, tmp_path / "run", n=2, progress=False, name="blank")
    assert len(calls) == 2 and calls[0][:3] == (test[0]["prompt"], "fill", 4)
    assert calls[0][3] == record_seed(test[0]) != calls[1][3]
    assert record_seed(test[0]) == record_seed(dict(test[0]))  # content-derived, repeatable
    folders = find_sequence_folders(tmp_path / "run")
    assert [f.name for f in folders] == ["0000-fill", "0001-fill"]
    assert json.loads((folders[0] / "sequence.json").read_text())["spec"] == test[0]["spec"]
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| fill |" in md and "**overall**" in md
    again = load_report(tmp_path / "run")
    assert again.summary == report.summary and again.name == "blank"
    assert score_folders(tmp_path / "run").summary == report.summary


def test_evaluate_leaves_nothing_half_written(fill, records, tmp_path):
    _, test = records

    def broken(prompt: str, domain: str, num_frames: int, seed: int) -> list[Image.Image]:
        if "blue" in prompt:
            raise RuntimeError("model crashed")
        return [Image.new("RGB", (32, 32))] * num_frames

    (tmp_path / "report.json").write_text("{}")  # from an earlier run
    with pytest.raises(RuntimeError):
        evaluate(broken, test, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "sequences").iterdir()) == ["0000-fill"]
    assert not (tmp_path / "report.json").exists()
    with pytest.raises(ValueError, match="exactly num_frames"):
        evaluate(lambda p, d, n, s: [Image.new("RGB", (32, 32))], test, tmp_path / "short", progress=False)
    with pytest.raises(ValueError, match="load_split"):
        evaluate(lambda p, d, n, s: [], [{"prompt": "x"}], tmp_path / "bad", progress=False)


def test_evaluate_resume_keeps_finished_sequences(fill, records, tmp_path):
    _, test = records
    evaluate(lambda p, d, n, s: [Image.new("RGB", (32, 32))] * n, test, tmp_path, progress=False)
    calls = []
    evaluate(lambda p, d, n, s: calls.append(p) or [Image.new("RGB", (32, 32))] * n, test, tmp_path,
             progress=False, resume=True)
    assert calls == []


def test_ground_truth_baseline_is_the_ceiling(fill, records, tmp_path):
    _, test = records
    report = run_ground_truth(test, tmp_path, progress=False)
    overall = report.summary["overall"]
    assert overall["n"] == 3 and overall["attribute_acc"] == 1.0 and overall["step_acc"] == 1.0


def test_retrieval_returns_same_domain_nearest_and_is_deterministic(fill, records, tmp_path):
    train, test = records
    other = dict(train[1], domain="other")  # same prompt as a fill record, wrong domain
    retrieval = RetrievalBaseline([other] + train)
    best = retrieval.nearest("a red fill with a magenta marker", "fill")
    assert best is train[1] and best["domain"] == "fill"
    assert retrieval.nearest("blue magenta", "fill") is train[2]
    a = retrieval("a red fill", "fill", 4, seed=1)
    b = retrieval("a red fill", "fill", 4, seed=2)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="cross_domain_fallback"):
        retrieval.nearest("a red fill", "unknown")
    assert RetrievalBaseline(train, cross_domain_fallback=True).nearest("red", "unknown") is train[1]
    report = run_retrieval(train, test, tmp_path, progress=False)
    assert report.summary["overall"]["n"] == 3 and report.summary["overall"]["attribute_acc"] < 1.0


def test_resample():
    assert resample([0, 1, 2, 3], 4) == [0, 1, 2, 3]
    assert resample([0, 1, 2, 3, 4], 3) == [0, 2, 4]
    assert resample([0, 1], 4)[0] == 0 and resample([0, 1], 4)[-1] == 1


def test_reports_have_every_domain_row(fill, records, tmp_path):
    train, test = records
    gt = run_ground_truth(test, tmp_path / "gt", progress=False)
    ret = run_retrieval(train, test, tmp_path / "ret", progress=False)
    table = markdown_table(gt.summary)
    assert table.count("\n") == 3 and "| fill | 3 | 1.000 | 1.000 |" in table
    both = compare_markdown({"ground truth": gt, "retrieval": ret.summary})
    assert "| fill | ground truth | 3 |" in both and "| fill | retrieval | 3 |" in both
    assert "| **overall** | retrieval |" in both
