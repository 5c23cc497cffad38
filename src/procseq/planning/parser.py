"""Prompt -> the domain's own attributes (the values a prompt names, nothing chosen).

:func:`parse_prompt` reads a prompt in any wording (the corpus's templates or free text) into the spec
attributes of a synthetic domain (``{"color": "red", "shape": "star", "position": "left", ...}``). The word
lists are the corpus's own attribute values (the domain modules' constants) plus general lexical knowledge
written here (British spellings, common synonyms such as "centre"/"middle", "crimson", "sphere"); the cue
words that say which attribute a colour belongs to ("sky", "baseplate", "background", "plate") are words of
the training pool. No word here comes from the ``test-paraphrase`` pool (a test checks it), so that split
stays a held-out measure of the parser.

Words outside the corpus and these lists are mapped to one of the domain's values through WordNet where it is
installed (:func:`mapped_words`: ``a vermilion rhombus`` reads as red and diamond); without WordNet
(or with ``PROCSEQ_WORDNET=off``) they are left out, as before.

The parser is also the reader of captions: :func:`parse_prompt` on a plan's captions gives the values the
captions state, which is how a caption that contradicts the prompt is found (:func:`contradictions`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable

from procseq.data.synthetic import clay, cooking, emoji, lego, line_drawing, origami, painting, pixel_art
from procseq.data.synthetic import draw as D

Lexicon = dict[str, tuple[str, ...]]
Mention = tuple[int, int, str]  # (first token, one past the last token, value)

_WORD = re.compile(r"[a-z0-9]+")
SPELLING = {"grey": "gray", "colour": "color", "centre": "center", "centred": "centered"}
"""General spelling variants, folded before matching."""

NUMBERS: dict[str, int] = {w: i for i, w in enumerate(D.NUMBERS)}
NUMBERS.update({"a": 1, "an": 1, "single": 1, "a single": 1, "couple": 2, "pair": 2, "dozen": 12})

COLOR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet"), "orange": ("tangerine",), "yellow": ("golden", "gold", "lemon"),
    "green": ("emerald", "lime"), "blue": ("azure", "navy", "cobalt"), "purple": ("violet", "lilac", "lavender"),
    "pink": ("rose", "magenta"), "brown": ("tan",),
}


def tokens(text: str) -> list[str]:
    """Lower-case words of `text` with general spelling variants folded (``grey`` -> ``gray``)."""
    return [SPELLING.get(w, w) for w in _WORD.findall(text.lower())]


def lexicon(values: list[str] | tuple[str, ...], extra: dict[str, tuple[str, ...]] | None = None) -> Lexicon:
    """value -> its surface phrases: the value itself, its plural, and `extra` synonyms."""
    extra = extra or {}
    return {v: (v, v + "s", *extra.get(v, ())) for v in values}


def colors(values: list[str] | tuple[str, ...] = tuple(D.COLORS)) -> Lexicon:
    """Colour names with their general synonyms."""
    return {v: (v, *COLOR_SYNONYMS.get(v, ())) for v in values}


def find(words: list[str], lex: Lexicon, taken: set[int] | None = None) -> list[Mention]:
    """Every mention of a `lex` value in `words`, longest phrase first at each position, skipping `taken`
    tokens; the tokens of each mention are added to `taken`."""
    taken = set() if taken is None else taken
    phrases = sorted(((tuple(tokens(p)), v) for v, ps in lex.items() for p in ps), key=lambda x: -len(x[0]))
    out: list[Mention] = []
    i = 0
    while i < len(words):
        for phrase, value in phrases:
            n = len(phrase)
            if tuple(words[i:i + n]) == phrase and not taken & set(range(i, i + n)):
                out.append((i, i + n, value))
                taken.update(range(i, i + n))
                i += n - 1
                break
        i += 1
    return out


def followed_by(words: list[str], m: Mention, cues: tuple[str, ...], gap: int = 0) -> bool:
    """Whether one of `cues` comes right after mention `m` (up to `gap` words between)."""
    return any(w in cues for w in words[m[1]: m[1] + 1 + gap])


def preceded_by(words: list[str], m: Mention, cues: tuple[str, ...]) -> bool:
    """Whether `m` follows one of `cues` (an article may stand between)."""
    before = [w for w in words[max(0, m[0] - 2): m[0]] if w not in ("a", "an", "the")]
    return bool(before) and before[-1] in cues


def count_before(words: list[str], nouns: tuple[str, ...], skip: set[str] = frozenset(),
                 articles: bool = False) -> int | None:
    """The number (a word or digits) that counts one of `nouns`: ``"eight bricks"``, ``"three red tomatoes"``
    (words in `skip` may stand between); with `articles`, ``"a hatching line"`` counts one."""
    for i, w in enumerate(words):
        n = int(w) if w.isdigit() else NUMBERS.get(w) if articles or w not in ("a", "an") else None
        if n is None:
            continue
        j = i + 1
        while j < len(words) and words[j] in skip:
            j += 1
        if j < len(words) and words[j] in nouns:
            return n
    return None


def first(mentions: list[Mention]) -> str | None:
    """The value of the first mention, if any."""
    return mentions[0][2] if mentions else None


POSITIONS: Lexicon = {"left": ("left", "leftmost"), "center": ("center", "middle", "centered"),
                      "right": ("right", "rightmost")}
COLOR_WORDS = {p for ps in colors().values() for p in ps} | {"light", "dark", "and", "pixel", "lego", "clay", "paper"}


def _painting(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    sky_lex = {"day": ("day", "daytime", "daylight", "blue sky", "sunny sky"),
               "sunset": ("sunset", "dusk", "evening", "orange sky", "red sky", "pink sky"),
               "night": ("night", "nighttime", "midnight", "dark sky", "black sky")}
    out = {"sky": first(find(w, sky_lex, taken)),
           "ground": first(find(w, lexicon(list(painting.GROUNDS), {"grass": ("grassy", "meadow", "lawn"),
                                                                     "sand": ("sandy", "beach", "desert"),
                                                                     "snow": ("snowy",)}), taken)),
           "shape": first(find(w, lexicon(painting.SHAPES, SHAPE_SYNONYMS), taken)),
           "position": first(find(w, POSITIONS, taken)),
           "color": first(find(w, colors(), taken))}
    return out


SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("circular", "disc", "disk", "ring"), "square": ("box",), "triangle": ("triangular",),
    "diamond": ("rhombus", "lozenge"), "star": (), "house": ("home", "hut", "cottage"),
}


def _line_drawing(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    hatch = count_before(w, ("hatching", "hatch", "hatches", "hatched", "hatchings"), articles=True)
    return {"shape": first(find(w, lexicon(line_drawing.SHAPES, SHAPE_SYNONYMS), taken)),
            "position": first(find(w, POSITIONS, taken)),
            "ink": first(find(w, colors(line_drawing.INKS), taken)),
            "hatch": hatch if hatch is not None and 1 <= hatch <= 3 else None}


def _lego(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    structure = first(find(w, lexicon(list(lego.STRUCTURES), {"tower": ("towers",), "stairs": ("staircase", "stair",
                                                                                               "stairway")}), taken))
    count = count_before(w, ("bricks", "brick", "blocks", "pieces"), COLOR_WORDS)
    found = find(w, colors(sorted(set(D.COLORS) | set(lego.BASEPLATES))), taken)
    plate = [m for m in found if followed_by(w, m, ("baseplate", "baseplates", "plate"))
             or preceded_by(w, m, ("on", "onto", "upon"))]
    rows = [m for m in found if m not in plate]
    if not plate and len(rows) >= 3 and rows[-1][2] in lego.BASEPLATES:  # a third colour: the baseplate's
        plate, rows = rows[-1:], rows[:-1]
    distinct = list(dict.fromkeys(m[2] for m in rows))
    return {"structure": structure, "count": count if count is not None and 1 <= count <= 15 else None,
            "baseplate": first(plate) if first(plate) in lego.BASEPLATES else None,
            "primary": distinct[0] if distinct else None,
            "secondary": distinct[1] if len(distinct) > 1 else None}


def _pixel_art(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    sprites = find(w, lexicon(list(pixel_art.SPRITES), {"cat": ("kitten", "kitty"), "house": ("home",)}), taken)
    found = find(w, {**colors(), **{b: (b,) for b in pixel_art.BACKGROUNDS}}, taken)
    back = [m for m in found if followed_by(w, m, ("background", "backgrounds", "bg"))]
    near = [m for m in found if m not in back and sprites and any(m[1] <= s[0] <= m[1] + 1 for s in sprites)]
    rest = [m for m in found if m not in back and m not in near]
    color = first(near) or next((m[2] for m in rest if m[2] in D.COLORS), None)
    if not back:
        back = [m for m in rest if m[2] in pixel_art.BACKGROUNDS and m[2] != color]
    return {"sprite": first(sprites), "color": color if color in D.COLORS else None,
            "background": first(back) if first(back) in pixel_art.BACKGROUNDS else None}


FOOD_WORDS: Lexicon = {"tomato": ("tomato", "tomatoes", "tomatos"), "carrot": ("carrot", "carrots"),
                       "cheese": ("cheese", "cheeses"), "spinach": ("spinach",),
                       "blueberry": ("blueberry", "blueberries", "blueberrys"), "plum": ("plum", "plums")}


def _cooking(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    plate = find(w, {p: (p, *((p.replace("light ", "pale "),) if p.startswith("light") else ())) for p in cooking.PLATES},
                 taken)
    food = first(find(w, FOOD_WORDS, taken))
    nouns = tuple(p for ps in FOOD_WORDS.values() for p in ps) + ("pieces", "piece")
    count = count_before(w, nouns, COLOR_WORDS)
    if food is None:  # the raw colour of the pieces names the food ("cut three red pieces")
        raw = {r: f for f, (r, _, _) in cooking.FOODS.items()}
        before = [m for m in find(w, colors(list(raw)), set(taken)) if followed_by(w, m, nouns)]
        food = raw[before[0][2]] if before else None
    return {"food": food, "plate": first(plate), "count": count if count is not None and 2 <= count <= 4 else None}


def _emoji(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    mouth = first(find(w, {"smile": ("smiling", "smile", "smiley", "happy", "grinning", "grin"),
                           "frown": ("frowning", "frown", "sad", "unhappy", "grumpy"),
                           "open": ("surprised", "shocked", "astonished", "amazed", "open mouth")}, taken))
    acc = find(w, lexicon(emoji.ACCESSORIES, {"hat": ("cap",), "bow": ("ribbon",), "scarf": ("scarves",)}), taken)
    face = first(find(w, {"circle": ("round", "circle", "circular"), "square": ("square", "squared"),
                          "heart": ("heart shaped", "heart", "hearts")}, taken))
    found = find(w, colors(), taken)
    worn = [m for m in found if acc and any(m[1] <= a[0] <= m[1] + 1 for a in acc)]
    rest = [m for m in found if m not in worn]
    return {"mouth": mouth, "accessory": first(acc), "face": face, "color": first(rest), "accessory_color": first(worn)}


def _clay(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    form = first(find(w, lexicon(list(clay.FORMS), {"ball": ("sphere", "orb"), "block": ("cube", "brick"),
                                                   "cone": ("cones",), "gem": ("jewel", "crystal")}), taken))
    return {"form": form, "color": first(find(w, colors(), taken))}


def _sand_art(w: list[str]) -> dict[str, Any]:
    layers = [m[2] for m in find(w, colors())]
    return {"layers": layers if len(layers) >= 2 else None}


def _origami(w: list[str]) -> dict[str, Any]:
    taken: set[int] = set()
    model = first(find(w, lexicon(list(origami.MODELS), {"boat": ("ship", "sailboat"), "house": ("home",)}), taken))
    return {"model": model, "color": first(find(w, colors(), taken))}


PARSERS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "painting": _painting, "line_drawing": _line_drawing, "lego": _lego, "pixel_art": _pixel_art,
    "cooking": _cooking, "emoji": _emoji, "clay": _clay, "sand_art": _sand_art, "origami": _origami,
}


def domain_values(domain: str) -> tuple[str, ...]:
    """The one-word attribute values of `domain` an unknown word may be mapped to (colours, shapes, objects...)."""
    lists = {"painting": (D.COLORS, painting.SHAPES, painting.GROUNDS), "line_drawing": (line_drawing.INKS,
             line_drawing.SHAPES), "lego": (D.COLORS, lego.BASEPLATES, lego.STRUCTURES),
             "pixel_art": (D.COLORS, pixel_art.SPRITES, pixel_art.BACKGROUNDS), "cooking": (cooking.FOODS, cooking.PLATES),
             "emoji": (D.COLORS, emoji.ACCESSORIES), "clay": (D.COLORS, clay.FORMS), "sand_art": (D.COLORS,),
             "origami": (D.COLORS, origami.MODELS)}.get(domain, ())
    return tuple(sorted({v for values in lists for v in values if " " not in v}))


def mapped_words(domain: str, text: str) -> dict[str, str]:
    """The words of `text` outside the corpus vocabulary and the parser's lists that WordNet relates to exactly one
    of `domain`'s values (:meth:`procseq.data.wordnet.WordNet.map_to`), e.g. vermilion -> red; ``{}`` without
    WordNet."""
    from procseq.data.wordnet import load
    from procseq.planning.vocabulary import unknown_words

    wordnet = load() if domain in PARSERS else None
    if wordnet is None:
        return {}
    known = _lexicon_words()
    out = {}
    for word in unknown_words(" ".join(tokens(text))):
        value = wordnet.map_to(word, domain_values(domain)) if len(word) > 2 and word not in known else None
        if value is not None:
            out[word] = value
    return out


def parse_prompt(domain: str, text: str) -> dict[str, Any]:
    """The attribute values `text` names for `domain` (only those it names); ``{}`` for a domain without a
    parser. Keys are the domain's spec attributes, except ``count`` (LEGO bricks, cooking pieces). A word the
    corpus does not know counts as the value WordNet maps it to (:func:`mapped_words`)."""
    parser = PARSERS.get(domain)
    if parser is None:
        return {}
    words = tokens(text)
    mapped = mapped_words(domain, text)
    return {k: v for k, v in parser([mapped.get(w, w) for w in words]).items() if v is not None}


OTHER_COLORS = ("white", "black", "gray", "silver", "beige", "cyan", "turquoise", "teal", "maroon")
"""Colour words outside the corpus palette (:data:`~procseq.data.synthetic.draw.COLORS`), for
:func:`unplaced_colors`."""


def unplaced_colors(domain: str, text: str, described: str) -> list[str]:
    """The colour words of `text` that `described` (the plan's own wording of every value it draws: the corpus
    prompt of its attributes and its captions) never names: ``"a green LEGO tower on a white plate"`` ->
    ``["white"]`` (LEGO baseplates are green, gray or blue). What the plan cannot draw as asked is reported
    instead of silently replaced. Empty for a domain without a parser."""
    if domain not in PARSERS:
        return []
    lexicon_ = {**colors(), **{c: (c,) for c in OTHER_COLORS}}
    drawn = {value for _, _, value in find(tokens(described), lexicon_)}
    out: list[str] = []
    for _, _, value in find(tokens(text), lexicon_):
        if value not in drawn and value not in out:
            out.append(value)
    return out


SLOT_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "painting": {"color": ("color",), "shape": ("shape",), "where": ("position",), "sky": ("sky",),
                 "ground": ("ground",)},
    "line_drawing": {"ink": ("ink",), "shape": ("shape",), "where": ("position",), "hatch": ("hatch",)},
    "lego": {"structure": ("structure",), "n": ("count",), "primary": ("primary",), "secondary": ("secondary",),
             "baseplate": ("baseplate",)},
    "pixel_art": {"color": ("color",), "sprite": ("sprite",), "background": ("background",)},
    "cooking": {"n": ("count",), "plural": ("food",), "plate": ("plate",)},
    "emoji": {"mood": ("mouth",), "color": ("color",), "face": ("face",), "acc_color": ("accessory_color",),
              "accessory": ("accessory",)},
    "clay": {"color": ("color",), "form": ("form",)},
    "sand_art": {"layers": ("layers",)},
    "origami": {"color": ("color",), "model": ("model",)},
}
"""The corpus's template slots (:mod:`procseq.data.synthetic.phrasing`) -> the attributes each names."""


def prompt_values(domain: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """A spec's attribute values under the parser's keys (the LEGO brick count as ``count``)."""
    out = dict(attributes)
    if domain == "lego":
        out["count"] = len(attributes["bricks"])
    return out


def named_attributes(domain: str, template: str) -> list[str]:
    """The attributes a corpus template names (its slots); a spec's own prompt names them all."""
    slots = {s.removeprefix("a_") for s in re.findall(r"\{(\w+)\}", template)}
    return sorted({k for s in slots for k in SLOT_KEYS[domain].get(s, ())})


ORDERED = ("primary", "secondary", "layers")
"""Keys read from all captions together (their order matters); the others are read caption by caption."""


def contradictions(domain: str, asked: dict[str, Any], captions: list[str]) -> list[str]:
    """Each value the captions state that differs from the value `asked` names (``"color: the captions say
    'blue', the prompt 'red'"``); empty when the captions agree with the prompt."""
    stated: dict[str, list[Any]] = {}
    for caption in captions:
        for key, value in parse_prompt(domain, caption).items():
            stated.setdefault(key, []).append(value)
    together = parse_prompt(domain, " ".join(captions))
    out = []
    for key, value in asked.items():
        if key == "layers":  # the named bottom layer first, and no colour the prompt did not name
            got = together.get(key)
            bad = [] if got is None or (set(got) <= set(value) and got[0] == value[0]) else [got]
        elif key in ORDERED:
            got = together.get(key)
            bad = [] if got is None or got == value or (key == "secondary" and got == asked.get("primary")) else [got]
        else:
            bad = [v for v in stated.get(key, []) if v != value]
        if bad:
            out.append(f"{key}: the captions say {bad[0]!r}, the prompt {value!r}")
    return out


@lru_cache(maxsize=1)
def _lexicon_words() -> frozenset[str]:
    return frozenset(lexicon_words())


def lexicon_words() -> set[str]:
    """Every word the parser's own word lists and cue words use (a test checks none comes from the test pool)."""
    import inspect
    import sys

    src = inspect.getsource(sys.modules[__name__])
    src = src[:src.index("SLOT_KEYS: dict")]  # the word lists and parsers; below are attribute names only
    matched = re.findall(r'"([a-z][a-z ]*)"(?!\s*:)', src)  # dict keys are attribute names, not words read
    return {w for phrase in [*matched, *SPELLING, *NUMBERS] for w in phrase.split()}


__all__ = ["OTHER_COLORS", "unplaced_colors", "SLOT_KEYS", "contradictions", "count_before", "domain_values", "find",
           "lexicon_words", "mapped_words", "named_attributes", "parse_prompt",
           "prompt_values", "tokens"]
