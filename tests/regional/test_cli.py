"""`procseq generate --mode regional`: any frame count, sequence.json, and one line + exit 2 on bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from procseq.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_generate_regional_writes_the_sequence(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "seq"
    res = run("generate", "a red circle", "--mode", "regional", "--frames", "14", "--steps", "2",
              "--model", str(tiny_model_dir), "--out", str(out))
    assert res.exit_code == 0, res.output
    record = json.loads((out / "sequence.json").read_text())
    assert record["num_frames"] == 14 and len(record["captions"]) == 14
    assert record["settings"]["mode"] == "regional"
    assert (out / "frame_13.png").is_file() and (out / "grid.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--frames", "14"], "got 14; for more steps use --mode regional"),  # grid mode keeps its limit and names the way out
    (["--mode", "regional", "--frames", "65"], "--frames must be"),
    (["--mode", "regional", "--frames", "5", "--plan", "PLAN"], "has 3 steps but --frames is 5"),
])
def test_bad_regional_requests_are_one_line(tiny_model_dir, tmp_path, args, message) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"title": "a red circle", "domain": "painting", "captions": ["a", "b", "c"]}))
    out = tmp_path / "seq"
    res = run("generate", "a red circle", "--model", str(tiny_model_dir), "--out", str(out),
              *[str(plan) if a == "PLAN" else a for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()
