"""Help that teaches: generate's options in sections, train's presets, data make's domain sizes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from procseq.cli import main
from procseq.training.config import presets


def help_of(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_generate_help_is_in_sections() -> None:
    text = help_of("generate")
    titles = ["What to make:", "Layout:", "Known frames", "Adaptive steps", "Output:", "Sampling and guidance:",
              "Model, adapters and machine:"]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions) and "Examples:" in text
    text = text[positions[0]:]  # the options (the examples above them name some too)
    assert text.index("--known INDEX") > text.index("Known frames") and text.index("--frame-scale") > text.index("Output:")
    assert text.index("--k-add") > text.index("Adaptive steps") > text.index("--mode")


def test_train_help_lists_the_presets() -> None:
    text = help_of("train")
    assert "Presets" in text and presets() and all(name in text for name in presets())


def test_data_make_sizes_every_domain(tmp_path) -> None:
    text = help_of("data", "make")
    assert "clay: 300" in text and "--adapter-size" in text
    out = tmp_path / "corpus"
    res = CliRunner().invoke(main, ["-q", "data", "make", "--out", str(out), "--per-domain", "1", "--test-per-domain",
                                    "1", "--adapter-size", "clay=2", "--adapter-size", "sand_art=1"])
    assert res.exit_code == 0, res.output
    counts = json.loads(res.output.split(": ", 1)[1])["train"]
    assert counts["clay"] == 2 and counts["sand_art"] == 1 and counts["lego"] == 1
    bad = CliRunner().invoke(main, ["data", "make", "--out", str(tmp_path / "b"), "--adapter-size", "lego=5"])
    assert bad.exit_code == 2 and "DOMAIN one of clay, sand_art" in bad.output
