"""`procseq recraft` end to end, and every bad input: one stderr line, exit 2, no output folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from procseq.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_recraft_writes_the_sequence(tiny_model_dir, tmp_path) -> None:
    image = tmp_path / "done.jpg"
    Image.new("RGB", (30, 20), (200, 40, 40)).save(image)
    out = tmp_path / "seq"
    res = run("recraft", str(image), "--frames", "4", "--extend", "2", "--steps", "2", "--model",
              str(tiny_model_dir), "--no-lora", "--out", str(out))
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [".procseq-output"] + [f"frame_{i:02d}.png" for i in range(6)] + ["grid.png", "sequence.gif",
                                                                                      "sequence.json", "sequence.png"]
    record = json.loads((out / "sequence.json").read_text())
    assert record["domain"] == "painting" and record["num_frames"] == 6 and record["settings"]["extend"] == 2
    with Image.open(out / "frame_05.png") as last:
        arr = np.asarray(last)
    assert last.size == (16, 16) and arr[0, 8].min() > 240  # padded with white (JPEG input: near white)


@pytest.mark.parametrize("kind, message", [
    ("missing", "No image file"),
    ("empty", "empty"),
    ("text", "not a readable image"),
    ("truncated", "corrupt"),
    ("huge", "megapixels"),
])
def test_bad_inputs_leave_nothing_behind(tiny_model_dir, tmp_path, kind, message) -> None:
    path = tmp_path / "input.png"
    extra: list[str] = []
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:150])
    elif kind == "huge":
        Image.new("RGB", (300, 300)).save(path)
        extra = ["--max-pixels", "1000"]
    out = tmp_path / "out"
    res = run("recraft", str(path), "--model", str(tiny_model_dir), "--no-lora", "--out", str(out), *extra)
    assert res.exit_code == 2
    assert res.output.startswith("procseq: error:") and message in res.output and res.output.count("\n") == 1
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_bad_options_leave_nothing_behind(tiny_model_dir, tmp_path) -> None:
    image = tmp_path / "ok.png"
    Image.new("RGB", (16, 16)).save(image)
    for args, message in ((["--extend", "-1"], "--extend"), (["--domain", "opera"], "Unknown domain"),
                          (["--lora", str(tmp_path / "nope")], "No condition LoRA")):
        out = tmp_path / "out"
        res = run("recraft", str(image), "--model", str(tiny_model_dir), "--out", str(out), *args)
        assert res.exit_code == 2 and message in res.output, res.output
        assert not out.exists()


def test_generate_with_known_frames_and_continue(tiny_model_dir, tmp_path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (16, 16), (200, 40, 40)).save(first)
    Image.new("RGB", (20, 16), (40, 200, 40)).save(second)
    out = tmp_path / "gen"
    res = run("generate", "a red circle", "--frames", "4", "--steps", "2", "--model", str(tiny_model_dir),
              "--known", f"0={first}", "--known", f"-1={second}", "--out", str(out))
    assert res.exit_code == 0, res.output
    record = json.loads((out / "sequence.json").read_text())
    assert record["settings"]["known_frames"] == [0, 3] and record["known_inputs"]["0"] == str(first)
    with Image.open(out / "frame_00.png") as f0:
        assert f0.getpixel((8, 8)) == (200, 40, 40)
    out2 = tmp_path / "cont"
    res = run("continue", str(first), str(second), "--prompt", "a red circle", "--frames", "4", "--steps", "2",
              "--model", str(tiny_model_dir), "--out", str(out2))
    assert res.exit_code == 0, res.output
    assert json.loads((out2 / "sequence.json").read_text())["settings"]["known_frames"] == [0, 1]


@pytest.mark.parametrize("args, message", [
    (["--known", "5=IMG"], "outside"), (["--known", "0=IMG", "--known", "-4=IMG"], "twice"),
    (["--known", "x=IMG"], "Bad --known"), (["--known", "0"], "Bad --known"),
    (["--known", "0=IMG", "--known", "1=IMG", "--known", "2=IMG", "--known", "3=IMG"], "nothing to generate"),
    (["--known", "0=MISSING"], "No image file"),
])
def test_bad_known_options_leave_nothing_behind(tiny_model_dir, tmp_path, args, message) -> None:
    image = tmp_path / "ok.png"
    Image.new("RGB", (16, 16)).save(image)
    args = [a.replace("IMG", str(image)).replace("MISSING", str(tmp_path / "nope.png")) for a in args]
    out = tmp_path / "out"
    res = run("generate", "a red circle", "--frames", "4", "--model", str(tiny_model_dir), "--out", str(out), *args)
    assert res.exit_code == 2 and message in res.output and res.output.count("\n") == 1, res.output
    assert not out.exists()
    res = run("continue", str(image), str(image), str(image), str(image), "--prompt", "x", "--frames", "4",
              "--model", str(tiny_model_dir), "--out", str(out))
    assert res.exit_code == 2 and "nothing to generate" in res.output and not out.exists()
