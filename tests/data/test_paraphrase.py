"""Paraphrases: many wordings per spec, and a test-paraphrase split whose templates and synonyms never reach train."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from procseq.data import dataset as ds
from procseq.data.synthetic import DOMAIN_PLAN, REGISTRY, generate, get_domain
from procseq.data.synthetic.phrasing import (
    CAPTION_FRAMES, CAPTION_VERBS, SYNONYMS, TEMPLATES, phrase_captions, phrase_prompt, slots,
)

WORD = re.compile(r"[a-z0-9-]+")


def _words(texts) -> set[str]:
    return {w for t in texts for w in WORD.findall(t.lower())}


def _test_only_words() -> set[str]:
    texts = [w for g in SYNONYMS.values() for w in g[1]] + [w for g in CAPTION_VERBS.values() for w in g[1]]
    return _words(texts + [f.replace("{}", " ") for f in CAPTION_FRAMES["test"]])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("p") / "corpus"
    ds.make_corpus(out, per_domain=6, test_per_domain=2, adapter_sizes={"clay": 2, "sand_art": 2}, progress=False,
                   wording="paraphrase", phrasings=3, lengths="any")
    return out


def test_every_domain_has_phrasings_that_keep_the_attributes() -> None:
    assert set(TEMPLATES) == set(REGISTRY)
    rng = np.random.default_rng(0)
    for name in sorted(REGISTRY):
        spec, _ = generate(name, 1)
        values = {v for k, v in slots(name, spec.attributes).items() if not k.startswith("a_")}
        prompts = {phrase_prompt(name, spec.attributes, "train", rng)[0] for _ in range(40)}
        assert len(prompts) >= 3  # many phrasings of one spec
        for p in prompts | {phrase_prompt(name, spec.attributes, "test", rng)[0]}:
            assert all(v in p for v in values), (p, values)  # the text still decides the picture


def test_test_paraphrase_wording_never_occurs_in_train(corpus: Path) -> None:
    train = ds.load_split(corpus, "train")
    test = ds.load_split(corpus, "test-paraphrase")
    assert {r["template"].split("/")[1] for r in train} == {"train"}
    assert {r["template"].split("/")[1] for r in test} == {"test"}
    seen = _words(p for r in train for p in [*r["prompts"], *r["captions"], r["spec"]["prompt"], *r["spec"]["captions"]])
    assert not seen & _test_only_words()
    skeleton = lambda t: re.sub(r"\{\w+\}|<\w+>", "#", t)  # noqa: E731
    train_t = {skeleton(t) for d in TEMPLATES for t in TEMPLATES[d][0]}
    assert not {skeleton(t) for d in TEMPLATES for t in TEMPLATES[d][1]} & train_t
    assert _words(r["prompt"] for r in test) & _test_only_words()  # the test split does use them
    assert all(get_domain(r["domain"]).held_out() >= {r["spec"]["composition"]} for r in test)


def test_rows_hold_several_phrasings_and_the_canonical_spec(corpus: Path) -> None:
    for r in ds.load_split(corpus, "train"):
        assert len(r["prompts"]) == 3 and r["prompt"] == r["prompts"][0]
        assert len(r["captions"]) == r["num_frames"] == len(r["spec"]["captions"])
    data = ds.GridDataset(corpus, "train", phrasings=3)
    assert len(data) == 3 * len(ds.load_split(corpus, "train"))
    assert len({data[i]["prompt"] for i in range(3)}) >= 2


def test_phrase_captions_rewords_the_verb_only() -> None:
    rng = np.random.default_rng(1)
    caps = phrase_captions(["place the first brick, red, on the baseplate", "lay out the gray baseplate"], "test", rng)
    assert "position the first brick, red, on the baseplate" in caps[0] and "gray baseplate" in caps[1]
    with pytest.raises(ValueError, match="pool"):
        phrase_captions(["x"], "dev", rng)


def test_splits_load_by_name_with_datasets(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(corpus.parent / "hf"))
    loaded = datasets.load_dataset(str(corpus))
    names = {s.replace("_", "-") for s in loaded}
    assert names == {"train", "test-seen", "test-compositional", "test-length", "test-paraphrase"}
    one = datasets.load_dataset("imagefolder", data_dir=str(corpus / "test-paraphrase"), split="train")
    row = one[0]
    assert len(row["frames"]) == row["num_frames"] and row["frames"][0].size == (32, 32)
    assert row["image"].size[0] == 32 * int(np.ceil(np.sqrt(row["num_frames"])))
    plain = json.loads((corpus / "train" / "metadata.jsonl").read_text().splitlines()[0])
    casted = datasets.Dataset.from_list([{"f": str(corpus / "train" / plain["frames_file_names"][0])}])
    assert casted.cast_column("f", datasets.Image())[0]["f"].size == (32, 32)


def test_dataset_card_describes_the_corpus(corpus: Path) -> None:
    card = (corpus / "README.md").read_text()
    header = card.split("---")[1]
    assert "license: apache-2.0" in header and "- split: test_paraphrase" in header
    manifest = json.loads((corpus / "manifest.json").read_text())
    for split, count in manifest["counts"].items():
        assert f"| {split} | {count} |" in card  # every split with its size
    assert "`spec`" in card and "ground truth" in card


def test_part_order_phrasings_break_the_first_colour_word_shortcut() -> None:
    """Issue 26: in v2's train text the first colour word always named the same part (the emoji's face, the
    pixel sprite); now every multi-colour domain names another part first in a good share of its phrasings."""
    from procseq.data.synthetic.phrasing import PART_ORDER_TEMPLATES, bind_colours

    for domain, first_key, other_key in (("emoji", "color", "accessory_color"), ("pixel_art", "color", "background")):
        firsts = []
        for seed in range(60):
            spec, _ = generate(domain, seed)
            a = spec.attributes
            if a[first_key] == a[other_key]:
                continue
            rng = np.random.default_rng(seed)
            for _ in range(4):
                p = phrase_prompt(domain, a, "train", rng)[0]
                firsts.append(p.index(a[first_key]) < p.index(a[other_key]))
        assert 0.5 <= np.mean(firsts) <= 0.8, (domain, np.mean(firsts))  # v2: 1.0
        assert PART_ORDER_TEMPLATES[domain] == TEMPLATES[domain][0][-len(PART_ORDER_TEMPLATES[domain]):]
    spec, _ = generate("emoji", 2)
    a = spec.attributes
    bound = bind_colours(spec.captions[-1], "emoji", slots("emoji", a))
    assert bound.startswith("put ") and bound.endswith(f"on the {a['color']} {slots('emoji', a)['face']} face")
    assert bind_colours("knead the lump", "clay", {"color": "red", "form": "ball"}) == "knead the red lump"
    assert bind_colours("fill the star with flat red paint", "painting", slots("painting", {
        "color": "red", "shape": "star", "position": "left", "sky": "day", "ground": "sand"})) == \
        "fill the star with flat red paint"  # the colour is already said there


def test_caption_binding_is_train_only_and_deterministic() -> None:
    spec, _ = generate("lego", 4)
    a, caps = spec.attributes, spec.captions
    test = [phrase_captions(caps, "test", np.random.default_rng(3), "lego", a), phrase_captions(caps, "test", np.random.default_rng(3))]
    assert test[0] == test[1]  # the test pool is worded as before: no restating, no extra draw
    once = phrase_captions(caps, "train", np.random.default_rng(3), "lego", a)
    assert once == phrase_captions(caps, "train", np.random.default_rng(3), "lego", a)
    assert any(f"the {a['baseplate']} baseplate" in c for c in once[1:])
    row = {"domain": "emoji", "spec": generate("emoji", 1)[0].to_dict()}
    assert ds.paraphrase_row(row, 0, "train", 5, 3) == ds.paraphrase_row(row, 0, "train", 5, 3)
