"""WordNet as an optional source of word meaning: a reader of the database's own format (tested on a tiny
database written here), the parser's mapping of unknown words, and the fallback without WordNet."""

from __future__ import annotations

import pytest

from procseq.data import wordnet
from procseq.planning.parser import mapped_words, parse_prompt

SYNSETS = {  # name -> (words, [(pointer, target name)])
    "red": (["red", "redness"], []),
    "scarlet": (["scarlet", "vermilion"], [("@", "red")]),
    "figure": (["plane_figure"], []),
    "rhombus": (["rhombus", "rhomb", "diamond"], [("@", "figure")]),
    "circle": (["circle"], [("@", "figure")]),
    "triangle": (["triangle", "trigon"], [("@", "figure")]),
}


def write_database(root) -> None:
    """index.noun / data.noun in WordNet 3.0's format, with real byte offsets."""
    header = "  1 This is a tiny test database (format of WordNet 3.0).  \n"
    offsets, lines, at = {}, [], len(header)
    for name, (words, _) in SYNSETS.items():  # two passes: the lines' lengths do not depend on the targets' offsets
        offsets[name] = at
        at += len(_line(0, words, [("@", 0)] * len(SYNSETS[name][1])))
    for name, (words, ptrs) in SYNSETS.items():
        lines.append(_line(offsets[name], words, [(p, offsets[t]) for p, t in ptrs]))
    (root / "data.noun").write_text(header + "".join(lines))
    index: dict[str, list[int]] = {}
    for name, (words, _) in SYNSETS.items():
        for w in words:
            index.setdefault(w.lower(), []).append(offsets[name])
    (root / "index.noun").write_text(header + "".join(
        f"{w} n {len(o)} 1 @ {len(o)} 0 {' '.join(f'{x:08d}' for x in o)}  \n" for w, o in sorted(index.items())))
    for pos in ("adj", "verb", "adv"):
        (root / f"index.{pos}").write_text(header)


def _line(offset: int, words: list[str], ptrs: list[tuple[str, int]]) -> str:
    body = " ".join(f"{w} 0" for w in words)
    pointers = " ".join(f"{p} {t:08d} n 0000" for p, t in ptrs)
    return f"{offset:08d} 05 n {len(words):02x} {body} {len(ptrs):03d} {pointers} | a gloss  \n".replace("  |", " |")


@pytest.fixture()
def tiny_wordnet(tmp_path, monkeypatch):
    write_database(tmp_path)
    monkeypatch.setenv("PROCSEQ_WORDNET", str(tmp_path))
    return wordnet.load()


def test_the_reader_follows_synonyms_and_one_step_relations_only(tiny_wordnet) -> None:
    wn = tiny_wordnet
    assert wn is not None and wn.root == wordnet.wordnet_dir()
    assert {"red", "scarlet", "vermilion"} <= wn.related("scarlet") and "red" in wn.related("vermilions")
    assert "diamond" in wn.related("rhombus") and "triangle" not in wn.related("circle")  # siblings are not related
    assert wn.map_to("vermilion", ["red", "blue"]) == "red" and wn.map_to("rhomb", ["circle", "diamond"]) == "diamond"
    assert wn.map_to("circle", ["triangle", "diamond"]) is None and wn.map_to("zebra", ["red"]) is None


def test_the_parser_maps_an_unknown_word_to_a_known_value(tiny_wordnet) -> None:
    assert mapped_words("painting", "a vermilion star on the left") == {"vermilion": "red"}
    assert parse_prompt("painting", "a vermilion star on the left")["color"] == "red"
    assert mapped_words("painting", "a red star") == {}  # known words are never remapped
    from procseq.planning import corpus_plan

    plan = corpus_plan("a vermilion star on the left", "painting", 9)
    assert plan.meta["read_as"] == {"vermilion": "red"} and "fill the star with flat red paint" in plan.captions


def test_without_wordnet_the_parser_reads_as_before(monkeypatch) -> None:
    monkeypatch.setenv("PROCSEQ_WORDNET", "off")
    assert wordnet.load() is None and mapped_words("painting", "a vermilion star") == {}
    assert "color" not in parse_prompt("painting", "a vermilion star") and parse_prompt("painting", "a vermilion star")[
        "shape"] == "star"


def test_the_installed_wordnet_relates_the_corpus_values(monkeypatch) -> None:
    monkeypatch.delenv("PROCSEQ_WORDNET", raising=False)
    wn = wordnet.load()
    if wn is None:
        pytest.skip("WordNet is not installed (apt-get install wordnet-base)")
    assert "red" in wn.related("scarlet") and "diamond" in wn.related("rhombus")
    assert "triangle" not in wn.related("circle") and "circle" not in wn.related("triangle")
    assert parse_prompt("painting", "a vermilion rhombus on the left")["color"] == "red"
