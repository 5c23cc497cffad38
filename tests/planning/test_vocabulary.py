"""Honest about unknown words; the tutorial's default layout."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from procseq.cli import main
from procseq.models.loading import ModelDefaults
from procseq.planning.vocabulary import reports_unknown_words, unknown_words, unknown_words_line
from procseq.tutorial import best_layout


def test_unknown_words_of_a_prompt() -> None:
    assert unknown_words("how to bake a chocolate cake") == ["bake", "chocolate", "cake"]
    assert unknown_words("build a red LEGO car") == ["car"]
    assert unknown_words("a painting of a red star on the left under a sunset sky above sand, with a sun") == []
    assert unknown_words("three red tomatoes and two blueberries") == []  # plurals of known words are known
    assert unknown_words_line("procseq-tiny", ["cake", "chocolate"], "cooking") == (
        'procseq: procseq-tiny does not know "cake", "chocolate"; it will draw a cooking process from the words it '
        "knows")
    assert reports_unknown_words(ModelDefaults(domains=("painting",), from_config=True))
    assert not reports_unknown_words(ModelDefaults())  # FLUX.1: real text encoders, nothing reported


def test_pipeline_records_unknown_words_only_for_a_corpus_model(tiny_pipe) -> None:
    out = tiny_pipe("a chocolate cake painting", domain="painting", frames=4, num_inference_steps=1,
                    generator=torch.Generator().manual_seed(0))
    assert {"chocolate", "cake"} <= set(out.plans[0].meta["unknown_words"])
    assert out.sequences(["a chocolate cake painting"], "painting")[0].meta["unknown_words"] == \
        out.plans[0].meta["unknown_words"]
    saved = tiny_pipe.defaults
    try:
        tiny_pipe.defaults = ModelDefaults(frame_size=saved.frame_size, max_frames=saved.max_frames)
        out = tiny_pipe("a chocolate cake painting", domain="painting", frames=4, num_inference_steps=1,
                        generator=torch.Generator().manual_seed(0))
        assert "unknown_words" not in out.plans[0].meta
    finally:
        tiny_pipe.defaults = saved


def test_cli_reports_unknown_words_in_one_line(tmp_path, tiny_model_dir) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["generate", "a red star and a cake", "--domain", "painting", "--frames", "4", "--steps",
                             "1", "--model", str(tiny_model_dir), "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "does not know" in line]
    assert len(lines) == 1 and '"cake"' in lines[0] and "painting process" in lines[0]
    record = json.loads((tmp_path / "s" / "sequence.json").read_text())
    assert "cake" in record["unknown_words"]
    assert "fill the star with flat red paint" in record["captions"][1]  # 4 steps: stages merged, values kept
    r = runner.invoke(main, ["plan", "how to bake a chocolate cake", "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 0 and 'does not know "bake", "chocolate", "cake"' in r.output
    assert json.loads((tmp_path / "p.json").read_text())["meta"]["unknown_words"] == ["bake", "chocolate", "cake"]


def test_tutorial_defaults_to_the_best_measured_layout(tmp_path, tiny_model_dir) -> None:
    assert best_layout(9, 16) == "grid" and best_layout(4, 9) == "grid"
    assert best_layout(20, 16) == "frame-by-frame"
    r = CliRunner().invoke(main, ["tutorial", "show how to build a blue lego tower in 5 steps", "--steps", "1",
                                  "--model", str(tiny_model_dir), "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert "5 steps, grid mode" in (tmp_path / "t" / "tutorial.md").read_text()


def test_the_shipped_vocabulary_is_the_corpus_s() -> None:
    from procseq.planning.vocabulary import compute_corpus_words, corpus_words

    assert corpus_words() == compute_corpus_words(), (
        "the corpus changed: rewrite the shipped vocabulary with "
        "python -c 'from procseq.planning.vocabulary import write_corpus_words; write_corpus_words()'")


def test_the_words_a_model_knows_follow_its_tokenizer(tiny_pipe, monkeypatch) -> None:
    """The known words are computed once per tokenizer, and again when the pipeline's tokenizer is replaced."""
    from procseq.planning import Plan

    def unknown() -> list[str]:
        plans = [Plan("a chocolate cake painting", "painting", ["a"] * 4)]
        tiny_pipe.note_unknown_words(plans, ["a chocolate cake painting"])
        return plans[0].meta["unknown_words"]

    assert {"chocolate", "cake"} <= set(unknown())
    assert {"chocolate", "cake"} <= set(unknown())  # the remembered set

    class Knows:
        def get_vocab(self) -> dict[str, int]:
            return {"chocolate</w>": 0, "cake</w>": 1}

    monkeypatch.setattr(tiny_pipe, "tokenizer", Knows())
    assert not {"chocolate", "cake"} & set(unknown())
