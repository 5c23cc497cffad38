"""`procseq generate --adaptive` and `procseq adapt`: files and records consistent; every bad input one line, exit 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from procseq.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def frame_files(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("frame_*.png"))


def check_consistent(folder) -> dict:
    record = json.loads((folder / "sequence.json").read_text())
    n = record["num_frames"]
    assert frame_files(folder) == [f"frame_{i:02d}.png" for i in range(n)]
    assert len(record["captions"]) == n == record["adaptive"]["num_frames_out"] == len(record["adaptive"]["origin"])
    assert record["plan"]["captions"] == record["captions"]
    for rd in record["adaptive"]["rounds"]:
        assert set(rd["thresholds"]) == {"mu", "sigma", "tau_add", "tau_del"}
        for a in rd["actions"]:
            assert {"global", "local", "semantic", "combined"} <= set(a)
    assert (folder / "grid.png").is_file() and (folder / "sequence.gif").is_file()
    return record


@pytest.fixture(scope="module")
def generated(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("adaptive-cli") / "gen"
    res = run("generate", "a red circle", "--frames", "4", "--steps", "2", "--model", str(tiny_model_dir),
              "--out", str(out), "--adaptive", "--k-add", "0.5", "--max-rounds", "2", "--recompute-thresholds")
    assert res.exit_code == 0, res.output
    return out


def test_generate_adaptive_writes_a_consistent_sequence(generated) -> None:
    record = check_consistent(generated)
    settings = record["adaptive"]["settings"]
    assert record["adaptive"]["num_frames_in"] == 4 and settings["k_add"] == 0.5 and settings["recompute"] is True
    assert record["settings"]["frames"] == record["num_frames"]


def test_adapt_on_an_existing_folder(generated, tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "adapted"
    res = run("adapt", str(generated), "--out", str(out), "--model", str(tiny_model_dir), "--steps", "2",
              "--k-add", "0.5", "--k-del", "0.5")
    assert res.exit_code == 0, res.output and "stopped" in res.output
    record = check_consistent(out)
    assert record["adaptive"]["source"] == str(generated) and record["prompt"] == "a red circle"


@pytest.mark.parametrize("setup, args, message", [
    ("empty", [], "not a procseq sequence folder"),
    ("missing", [], "not a folder"),
    ("badjson", [], "not a valid"),
    ("nokeys", [], "captions"),
    ("single", [], "at least 2"),
    ("ok", ["--max-frames", "1"], "at least 2"),
    ("ok", ["--min-frames", "1"], "at least 2"),
    ("ok", ["--max-rounds", "0"], "max_rounds"),
    ("ok", ["--alpha", "0.8", "--beta", "0.8"], "alpha + beta"),
    ("ok", ["--features", "nowhere"], "CLIP/DINOv2"),
])
def test_adapt_bad_inputs_leave_nothing_behind(tiny_model_dir, tmp_path, setup, args, message) -> None:
    src = tmp_path / "src"
    if setup != "missing":
        src.mkdir()
    if setup == "badjson":
        (src / "sequence.json").write_text("{not json")
    elif setup in ("nokeys", "single", "ok"):
        n = 1 if setup == "single" else 2
        for i in range(n):
            Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(src / f"frame_{i:02d}.png")
        record = {"prompt": "x", "domain": "painting", "num_frames": n, "captions": ["a", "b"][:n]}
        (src / "sequence.json").write_text(json.dumps({"num_frames": n} if setup == "nokeys" else record))
    out = tmp_path / "out"
    res = run("adapt", str(src), "--out", str(out), "--model", str(tiny_model_dir), *args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("procseq: error:") and message in res.output and res.output.count("\n") == 1
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_generate_adaptive_bad_budget_fails_before_the_model(tmp_path) -> None:
    out = tmp_path / "gen"
    res = run("generate", "a red circle", "--model", str(tmp_path / "no-model"), "--adaptive", "--max-frames", "1",
              "--out", str(out))
    assert res.exit_code == 2 and "at least 2" in res.output and not out.exists()


def test_adapt_with_the_average_interpolator(generated, tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "avg"
    res = run("adapt", str(generated), "--out", str(out), "--model", str(tiny_model_dir), "--interpolator", "average",
              "--k-add", "0.5", "--max-rounds", "1")
    assert res.exit_code == 0, res.output
    record = check_consistent(out)
    assert record["adaptive"]["settings"]["k_add"] == 0.5
