"""`procseq generate` end to end, and every user error: one stderr line, exit 2, nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from procseq.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_generate_writes_the_sequence(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "seq"
    res = run("generate", "a red circle", "--domain", "painting", "--frames", "4", "--seed", "5", "--steps", "2",
              "--model", str(tiny_model_dir), "--out", str(out))
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [".procseq-output", "frame_00.png", "frame_01.png", "frame_02.png", "frame_03.png", "grid.png",
                     "sequence.gif", "sequence.json", "sequence.png"]
    record = json.loads((out / "sequence.json").read_text())
    assert record["prompt"] == "a red circle" and record["domain"] == "painting" and record["seed"] == 5
    assert len(record["captions"]) == 4 and record["settings"]["num_inference_steps"] == 2
    assert "total" in record["settings"]["timings_s"]
    with Image.open(out / "sequence.gif") as gif:
        assert gif.n_frames == 4
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (32, 32)
    # same seed, same frames; an existing folder needs --overwrite
    again = tmp_path / "again"
    run("generate", "a red circle", "--domain", "painting", "--frames", "4", "--seed", "5", "--steps", "2",
        "--model", str(tiny_model_dir), "--out", str(again))
    assert (out / "frame_02.png").read_bytes() == (again / "frame_02.png").read_bytes()
    # true CFG is a different sampler: same seed, a different grid, recorded in the settings
    cfg = tmp_path / "cfg"
    run("generate", "a red circle", "--domain", "painting", "--frames", "4", "--seed", "5", "--steps", "2",
        "--model", str(tiny_model_dir), "--true-cfg-scale", "3", "--out", str(cfg))
    assert json.loads((cfg / "sequence.json").read_text())["settings"]["true_cfg_scale"] == 3
    assert (out / "grid.png").read_bytes() != (cfg / "grid.png").read_bytes()
    res = run("generate", "a red circle", "--model", str(tiny_model_dir), "--out", str(out))
    assert res.exit_code == 2 and "--overwrite" in res.output


def not_a_model(tmp_path: Path) -> str:
    (tmp_path / "junk").mkdir(exist_ok=True)
    return str(tmp_path / "junk")


@pytest.mark.parametrize(
    "args, message",
    [
        (["", "--domain", "painting"], "prompt is empty"),
        (["a red circle", "--domain", "opera"], "Unknown domain"),
        (["a red circle", "--frames", "1"], "between 2 and 9"),
        (["a red circle", "--frames", "12"], "between 2 and 9"),
        (["a red circle", "--model", "NOT_A_MODEL"], "model_index.json"),
        (["a red circle", "--model", "./missing/model"], "neither a local folder"),
        (["a red circle", "--out", "UNWRITABLE"], "Cannot write"),
    ],
)
def test_user_errors(tiny_model_dir, tmp_path, args: list[str], message: str) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = [a.replace("NOT_A_MODEL", not_a_model(tmp_path)).replace("UNWRITABLE", str(blocker / "out")) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    before = set(tmp_path.iterdir())
    res = CliRunner().invoke(main, ["generate", *args, "--steps", "1"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("procseq: error:") and message in lines[-1]
    assert set(tmp_path.iterdir()) == before  # nothing half-written


def test_help_documents_every_option() -> None:
    res = run("generate", "--help")
    for opt in ("--domain", "--frames", "--seed", "--steps", "--guidance", "--frame-size", "--model", "--dtype",
                "--bf16-autocast", "--device", "--cpu-offload", "--out", "--overwrite", "--gif-ms"):
        assert opt in res.output
    assert run("--help").exit_code == 0
