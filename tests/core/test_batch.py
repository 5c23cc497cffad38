"""Batch generation (`procseq generate --prompts`): bad lines, resume after a kill, changed lines, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from procseq.batch import is_finished, read_prompt_file, run_batch
from procseq.cli import main
from procseq.outputs import record_temp
from tests.core.batch_fakes import FakePipeline

DEFAULTS = {"domain": "painting", "frames": 4, "seed": 0}
LINES = [
    '{"prompt": "a red star", "frames": 2}',
    "not json",
    '{"prompt": "a lego house", "domain": "lego", "seed": 5, "id": "house"}',
    "",
    '{"domain": "lego"}',
    '{"prompt": "x", "frames": "four"}',
    '{"prompt": "y", "colour": "red"}',
    '{"prompt": "z", "id": "house"}',
    '{"prompt": "a refused one", "domain": "nope"}',
    '{"prompt": "w", "mode": "sideways"}',
    '{"prompt": "a blue circle"}',
]


def write(tmp_path, lines=LINES):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_lines_are_reported_with_their_number_and_the_rest_kept(tmp_path) -> None:
    items, bad = read_prompt_file(write(tmp_path), DEFAULTS)
    assert [(it.line, it.name) for it in items] == [(1, "00001"), (3, "house"), (9, "00009"), (11, "00011")]
    assert items[0].settings == {"domain": "painting", "frames": 2, "seed": 0, "prompt": "a red star"}
    assert [n for n, _ in bad] == [2, 5, 6, 7, 8, 10]
    reasons = dict(bad)
    assert "not JSON" in reasons[2] and "prompt" in reasons[5] and "frames must be int" in reasons[6]
    assert "colour" in reasons[7] and "earlier line" in reasons[8] and "regional" in reasons[10]
    with pytest.raises(FileNotFoundError, match="one JSON object per line"):
        read_prompt_file(tmp_path / "missing.jsonl", DEFAULTS)


def test_resume_skips_finished_redoes_partial_and_changed_items(tmp_path) -> None:
    items, bad = read_prompt_file(write(tmp_path), DEFAULTS)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    report = run_batch(lambda: FakePipeline(log), items, bad, out, progress=False)
    assert report.counts == {"done": 3, "skipped": 0, "failed": 1, "bad lines": 6}
    failed = [r for r in report.results if r.status == "failed"]
    assert failed[0].line == 9 and "nope" in failed[0].message and not (out / "00009").exists()
    assert sorted(p.name for p in out.iterdir()) == ["00001", "00011", "batch.json", "house"]
    assert len(list((out / "00001").glob("frame_*.png"))) == 2 and (out / "house" / "sequence.gif").is_file()
    assert json.loads((out / "batch.json").read_text())["counts"]["done"] == 3
    assert "| **total** |" in report.to_markdown() and "bad line" in report.to_markdown()

    # a kill half-way through "house": its folder is gone, a temporary sibling is left behind
    (out / "house").rename(out / ".house.tmp-killed")
    record_temp(out / ".house.tmp-killed", "house")  # procseq's record of its temporary folder (issue 23)
    items[0].settings["seed"] = 1  # and line 1 was edited since
    log.write_text("")
    again = run_batch(lambda: FakePipeline(log), items, bad, out, progress=False)
    assert log.read_text().splitlines() == ["a red star", "a lego house"]  # the refused one is retried, too
    assert again.counts == {"done": 2, "skipped": 1, "failed": 1, "bad lines": 6}
    assert not list(out.glob(".*")) and all(is_finished(out, it) for it in items if it.line != 9)


def test_cli_batch_on_the_micro_model(tiny_model_dir, tmp_path) -> None:
    prompts = write(tmp_path, ['{"prompt": "a red circle painted on white paper", "frames": 4}',
                               '{"prompt": "a blue lego tower of three bricks", "domain": "lego", "frames": 4}', "{"])
    args = ["generate", "--prompts", str(prompts), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir),
            "--steps", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1  # a bad line: everything else done, then a non-zero status
    assert f"{prompts}:3: skipped: not JSON" in result.output and "done: 2" in result.output
    assert json.loads((tmp_path / "out" / "00002" / "sequence.json").read_text())["domain"] == "lego"
    result = CliRunner().invoke(main, args)
    assert "skipped: 2" in result.output and "done: 0" in result.output
    both = CliRunner().invoke(main, ["generate", "a prompt", "--prompts", str(prompts)])
    assert both.exit_code == 2 and "not both" in both.output


def test_a_line_picks_its_layout_and_the_pipeline_gets_it(tmp_path) -> None:
    """``mode`` in a line (or the command's default) reaches the pipeline call; an unknown one is a bad line."""
    from procseq.batch import generate_item

    items, bad = read_prompt_file(write(tmp_path, ['{"prompt": "a", "mode": "regional"}', '{"prompt": "b"}',
                                                   '{"prompt": "c", "mode": "frame-by-frame", "id": "c"}']),
                                  {**DEFAULTS, "mode": "grid"})
    assert not bad and [it.settings["mode"] for it in items] == ["regional", "grid", "frame-by-frame"]
    seen = []

    class Pipe:
        def __call__(self, prompt, **kwargs):
            seen.append(kwargs["mode"])
            raise RuntimeError("stop after the call")

    for item in items:
        with pytest.raises(RuntimeError, match="stop after the call"):
            generate_item(Pipe(), item, tmp_path / "out", {}, "m", 100)
    assert seen == ["regional", "grid", "frame-by-frame"]
    assert not any((tmp_path / "out").glob("*/sequence.json"))  # nothing half-written
