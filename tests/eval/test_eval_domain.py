"""The `--domain matters` measurement: which prompts count as unnamed, the wrong domain, the right-minus-wrong gap."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from procseq.data.synthetic.base import generate
from experiments.domain import compare_domains, names_domain, unnamed_records, wrong_domain


def test_names_domain_reads_words_not_substrings() -> None:
    assert names_domain("a LEGO tower of 5 bricks", "lego")
    assert names_domain("pixel art of a cat", "pixel_art") and names_domain("an 8x8 pixel heart", "pixel_art")
    assert not names_domain("brick wall on a blue base", "lego")
    assert not names_domain("a bird above a ground line", "line_drawing")  # "line" alone does not name it
    assert names_domain("a line drawing of a bird", "line_drawing")
    assert not names_domain("legos", "lego") and not names_domain("emojis", "emoji")  # whole words only


def test_wrong_domain_is_another_fixed_domain() -> None:
    domains = ["painting", "lego", "emoji"]
    assert [wrong_domain(d, domains) for d in domains] == ["lego", "emoji", "painting"]
    with pytest.raises(ValueError, match="at least two"):
        wrong_domain("lego", ["lego"])
    with pytest.raises(ValueError):
        wrong_domain("clay", domains)


def _record(domain: str, seed: int, prompt: str) -> dict:
    spec, _ = generate(domain, seed, num_frames=4)
    return {"prompt": prompt, "domain": domain, "num_frames": 4, "captions": spec.captions, "spec": spec.to_dict()}


def test_unnamed_records_keep_n_per_domain_of_the_unnamed() -> None:
    recs = [_record("lego", 0, "a LEGO wall"), _record("lego", 1, "brick wall"), _record("lego", 2, "brick tower"),
            _record("painting", 3, "a painting of a star"), _record("painting", 4, "a red star"),
            _record("emoji", 5, "a smiling face")]
    out = unnamed_records(recs, ["lego", "painting"], n=1)
    assert [(r["domain"], r["prompt"]) for r in out] == [("lego", "brick wall"), ("painting", "a red star")]


def test_compare_domains_scores_both_runs_against_the_truth(tmp_path) -> None:
    recs = [_record("lego", 0, "p0"), _record("painting", 1, "p1")]
    truth = {r["prompt"]: generate(r["domain"], r["spec"]["seed"], num_frames=4)[1] for r in recs}
    asked: list[tuple[str, str]] = []

    def fake(prompt: str, domain: str, num_frames: int, seed: int):
        asked.append((prompt, domain))
        owner = next(r["domain"] for r in recs if r["prompt"] == prompt)
        frames = truth[prompt] if domain == owner else [np.zeros_like(f) for f in truth[prompt]]
        return [Image.fromarray(f) for f in frames]

    result = compare_domains(fake, recs, ["lego", "painting"], tmp_path, progress=False)
    assert asked == [("p0", "lego"), ("p1", "painting"), ("p0", "painting"), ("p1", "lego")]
    assert result["n"] == 2 and result["right"]["step_acc"] == 1.0
    assert result["wrong"]["step_acc"] < 1.0 and result["step_acc_gap"] == pytest.approx(1.0 - result["wrong"]["step_acc"])
    assert (tmp_path / "right" / "report.json").is_file() and (tmp_path / "wrong" / "report.json").is_file()
