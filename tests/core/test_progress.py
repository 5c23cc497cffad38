"""Progress and quiet: the plan and a denoising bar on stderr, --quiet / --verbose / PROCSEQ_VERBOSITY, rank 0 only,
and a many-process accelerate launch that runs one process refused in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from procseq.cli import main
from procseq.distributed import check_launch
from procseq.planning import Plan
from procseq.progress import denoise_step, plans_made, show_progress
from procseq.quiet import ENV, NORMAL, QUIET, VERBOSE, notice, verbosity


def test_progress_counts_every_pass(monkeypatch, capsys) -> None:
    monkeypatch.delenv(ENV, raising=False)
    seen: list[tuple[int, int]] = []
    denoise_step(0, 3)  # no open progress: nothing happens
    with show_progress(passes=2, on_step=lambda done, total: seen.append((done, total))):
        plans_made([Plan("a lego tower", "lego", ["base", "top"])])
        for _ in range(2):
            for i in range(3):
                denoise_step(i, 3)
        denoise_step(0, 3)  # an unexpected third pass (an adaptive insertion): the total grows
    assert seen[0] == (1, 6) and seen[5] == (6, 6) and seen[-1] == (7, 9)
    err = capsys.readouterr().err
    assert "plan: 'a lego tower', 2 steps (lego)" in err and "denoising" in err and "1. base" not in err


def test_levels(monkeypatch, capsys) -> None:
    monkeypatch.delenv("RANK", raising=False)
    for value, level in (("quiet", QUIET), ("0", QUIET), ("", NORMAL), ("verbose", VERBOSE), ("2", VERBOSE)):
        monkeypatch.setenv(ENV, value)
        assert verbosity() == level
    monkeypatch.setenv(ENV, "loud")
    assert verbosity() == NORMAL
    with pytest.raises(ValueError, match="quiet, normal or verbose"):
        verbosity(strict=True)
    monkeypatch.setenv(ENV, "verbose")
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 speaks
    assert verbosity() == QUIET
    notice("hello")
    with show_progress(on_step=None):
        plans_made([Plan("t", "lego", ["a"])])
        denoise_step(0, 1)
    assert capsys.readouterr().err == ""


def test_accelerate_single_process_launch_is_refused() -> None:
    with pytest.raises(ValueError, match="torchrun --nproc_per_node N"):
        check_launch({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    check_launch({"ACCELERATE_USE_CPU": "True"})  # one process asked for: fine
    check_launch({"MASTER_ADDR": "x", "WORLD_SIZE": "2", "RANK": "0"})  # torchrun: fine
    check_launch({})


def test_generate_shows_plan_and_steps_unless_quiet(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    args = ["generate", "a red circle", "--frames", "4", "--steps", "2", "--model", str(tiny_model_dir)]
    normal = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")], catch_exceptions=False)
    assert normal.exit_code == 0, normal.output
    assert "procseq: loading" in normal.output and "procseq: plan:" in normal.output
    assert "denoising" in normal.output and "2/2" in normal.output
    quiet = CliRunner().invoke(main, ["-q", *args, "--out", str(tmp_path / "b")], catch_exceptions=False)
    assert quiet.exit_code == 0 and quiet.output.strip().startswith("wrote 4 frames") and "procseq:" not in quiet.output
    import os

    assert ENV not in os.environ  # --quiet holds for its run only
    verbose = CliRunner().invoke(main, ["--verbose", *args, "--out", str(tmp_path / "c")], catch_exceptions=False)
    assert verbose.exit_code == 0 and "  1. " in verbose.output
    bad = CliRunner().invoke(main, ["-q", "-v", "data", "montage"])
    assert bad.exit_code == 2 and "not both" in bad.output
    monkeypatch.setenv(ENV, "loud")
    bad = CliRunner().invoke(main, ["data", "montage"])
    assert bad.exit_code == 2 and "PROCSEQ_VERBOSITY" in bad.output and len(bad.output.strip().splitlines()) == 1
