"""Model cards: the YAML header the Hub reads, written for saved folders; the embedded model's own card."""

from __future__ import annotations

import yaml

from procseq.cards import model_card
from procseq.models.loading import EMBEDDED_DIR


def header(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---")[1])


def test_model_card_header_and_domains() -> None:
    card = model_card("my-model", ["lego", "painting"], ["clay"], {"frame_size": 32, "domains": ["lego"]})
    meta = header(card)
    assert meta["library_name"] == "diffusers" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "text-to-image" and "procseq" in meta["tags"]
    assert "base: lego, painting" in card and "clay" in card and "| frame_size | 32 |" in card


def test_embedded_model_has_a_card_with_scores() -> None:
    card = (EMBEDDED_DIR / "README.md").read_text()
    meta = header(card)
    assert meta["library_name"] == "diffusers" and meta["license"] == "apache-2.0"
    assert "## Scores" in card and "experiments/v2_eval.sh" in card  # every figure with its command


def test_saved_folder_gets_a_card(tiny_pipe, tmp_path) -> None:
    tiny_pipe.save_pretrained(tmp_path / "saved")
    meta = header((tmp_path / "saved" / "README.md").read_text())
    assert meta["library_name"] == "diffusers"
    assert "painting, lego" in (tmp_path / "saved" / "README.md").read_text()
