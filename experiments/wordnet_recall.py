"""How well does WordNet (Debian's wordnet-base) relate the corpus's own attribute values to their synonyms,
and how many test-paraphrase words would it bring into training text?

    python -m experiments.wordnet_recall

Gold pairs are the parser's own synonym lists (procseq.planning.parser: COLOR_SYNONYMS, SHAPE_SYNONYMS and the
object lexicons of its domain readers); a pair counts as recalled when WordNet maps the synonym to exactly that
value among its family's values (WordNet.map_to). False relations: pairs of distinct values of one family that
WordNet relates (circle~triangle must not be).
"""

from __future__ import annotations

import itertools
import re
import sys

from procseq.data.synthetic import clay, draw as D, emoji, lego, origami, painting, pixel_art
from procseq.data.synthetic.phrasing import pool_words
from procseq.data.wordnet import load
from procseq.planning.parser import COLOR_SYNONYMS, SHAPE_SYNONYMS
from procseq.planning.vocabulary import corpus_words

OBJECTS = {"cat": ("kitten", "kitty"), "house": ("home", "cottage", "hut"), "stairs": ("staircase", "stairway"),
           "ball": ("sphere", "orb"), "block": ("cube", "brick"), "gem": ("jewel", "crystal"),
           "boat": ("ship", "sailboat"), "hat": ("cap",), "bow": ("ribbon",), "grass": ("meadow", "lawn"),
           "sand": ("beach", "desert")}
FAMILIES = {
    "colours": (tuple(D.COLORS), COLOR_SYNONYMS),
    "shapes": (tuple(sorted(set(painting.SHAPES) | {"house"})), {k: v for k, v in SHAPE_SYNONYMS.items() if v}),
    "objects": (tuple(sorted({*pixel_art.SPRITES, *lego.STRUCTURES, *clay.FORMS, *origami.MODELS, *emoji.ACCESSORIES,
                              *painting.GROUNDS})), OBJECTS),
}
SPOT = [("red", "scarlet", True), ("diamond", "rhombus", True), ("circle", "triangle", False),
        ("blue", "azure", True), ("square", "circle", False), ("red", "pink", False)]


def main() -> int:
    wn = load()
    if wn is None:
        print("WordNet is not installed (apt-get install wordnet-base); nothing to measure.")
        return 1
    print(f"WordNet at {wn.root}")
    for family, (values, gold) in FAMILIES.items():
        pairs = [(syn, value) for value, syns in gold.items() for syn in syns if value in values]
        got = [wn.map_to(syn, values) for syn, _ in pairs]
        hit = sum(g == v for g, (_, v) in zip(got, pairs))
        wrong = [(s, g) for g, (s, v) in zip(got, pairs) if g is not None and g != v]
        missed = [s for g, (s, _) in zip(got, pairs) if g is None]
        neg = list(itertools.combinations(values, 2))
        false = [(a, b) for a, b in neg if b in wn.related(a) or a in wn.related(b)]
        print(f"{family:8s} recall {hit}/{len(pairs)} = {hit / len(pairs):.2f}; mapped wrongly {len(wrong)} {wrong}; "
              f"unmapped {missed}; false relations {len(false)}/{len(neg)} {false}")
    for a, b, want in SPOT:
        print(f"spot {a}~{b}: related={b in wn.related(a) or a in wn.related(b)} (want {want})")
    train = {w for w in pool_words("train") | corpus_words() if re.fullmatch(r"[a-z]{3,}", w)}
    test_only = pool_words("test") - pool_words("train") - corpus_words()
    brought = sorted(test_only & set().union(*(wn.related(w) for w in train)))
    print(f"test-only words (test-paraphrase pool): {len(test_only)}; WordNet-related to some training word: "
          f"{len(brought)} {brought}")
    print("brought into training text by this change: 0 (WordNet is used by the prompt parser only)")
    from procseq.planning.parser import PARSERS, domain_values

    misread = {d: {w: v for w in sorted(test_only) if (v := wn.map_to(w, domain_values(d)))} for d in PARSERS}
    print(f"test-only words the parser would read as a value: {sum(map(len, misread.values()))} "
          f"{ {d: m for d, m in misread.items() if m} }")
    return 0


if __name__ == "__main__":
    sys.exit(main())
