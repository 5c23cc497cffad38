"""The adaptive-steps experiment drivers: one command per model folder (calibration, then the repair benchmark)
and the BENCHMARKS rows they print."""

from __future__ import annotations

import json

import pytest

from experiments import adaptive_repair, adaptive_v3


def test_markdown_gives_the_benchmark_rows() -> None:
    summary = {"truth / calibrated / drop": {"n": 30, "found": 0.9, "fill_auto": 0.8, "n_fill_auto": 27,
                                             "fill_sequence": 0.7, "n_fill_sequence": 27},
               "truth / calibrated / duplicate": {"n": 30, "found": 1.0, "other_removed": 0.0},
               "truth / calibrated / clean": {"n": 30, "edited": 0.0, "before": 1.0, "after": 1.0}}
    lines = adaptive_repair.markdown(summary).splitlines()
    assert lines[2] == "| truth | **calibrated** | 0.90 (27/30) | 1.00 (0.00) | 0.00 | 1.000 -> 1.000 |"
    assert "| auto | 0.800 (n=27) |" in lines and "| sequence | 0.700 (n=27) |" in lines
    assert not any(line.startswith("| average") for line in lines)  # not measured, not printed


def test_repair_refuses_a_missing_calibration(tiny_model_dir, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="No calibration"):
        adaptive_repair.main(["--model", str(tiny_model_dir), "--calibration", str(tmp_path / "none.json"),
                              "--out", str(tmp_path / "out")])


def test_calibration_refuses_an_unknown_insertion(tmp_path) -> None:
    from procseq.eval.adaptive_calibration import calibrate

    with pytest.raises(ValueError, match="Unknown insertion"):
        calibrate(tmp_path, None, insertions=("average", "window"))


def test_one_command_calibrates_then_benchmarks(tiny_model_dir, tmp_path, monkeypatch, capsys) -> None:
    small = {"adapter_sizes": {"clay": 1, "sand_art": 1}}
    monkeypatch.setattr(adaptive_v3, "CORPORA", {
        "corpus-a27": {"per_domain": 3, "test_per_domain": 2, "seed": 0, **small},
        "corpus-a27-s1": {"per_domain": 2, "test_per_domain": 1, "seed": 1, **small}})
    out = tmp_path / "run"
    result = adaptive_v3.main(["--model", str(tiny_model_dir), "--out", str(out), "--data-dir", str(tmp_path / "data"),
                               "--n-calibration", "3", "--n-insertion", "1", "--n", "1", "--domains", "painting,lego"])
    cal = json.loads((out / "adaptive_calibration.json").read_text())
    assert cal["source"]["split"] == "train" and cal["source"]["insertions"] == ["average", "model", "sequence"]
    assert {d["insertion"] for d in cal["domains"].values()} <= {"average", "model", "sequence"}
    assert result["calibration"] == str(out / "adaptive_calibration.json")
    assert (out / "adaptive_repair.json").is_file() and {"truth / calibrated / drop"} <= set(result["summary"])
    printed = capsys.readouterr().out
    assert "no known_mode" in printed  # the micro model says nothing of known frames: the lead is told
    assert "| truth | **calibrated** |" in printed and "CPU s in this process" in printed


def test_the_note_names_an_inplace_base(tiny_model_dir, tmp_path) -> None:
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "procseq.json").read_text())
    (tmp_path / "m" / "procseq.json").write_text(json.dumps({**config, "known_mode": "inplace"}))
    assert adaptive_v3.known_frames_note(str(tmp_path / "m")) == (
        "known frames: procseq.json known_mode inplace, condition LoRA None")
