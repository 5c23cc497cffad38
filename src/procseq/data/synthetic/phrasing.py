"""Many phrasings of one spec: templates, synonyms, word order, imperative and descriptive forms.

Every spec keeps its canonical (v1) prompt and captions; :func:`phrase_prompt` and
:func:`phrase_captions` write other ways a person would say the same thing. Templates and synonyms
come in two disjoint pools: ``train`` (what the training corpus is written with) and ``test`` (only
the ``test-paraphrase`` split), so the gap between wordings is measured on wordings the model never
saw. Attribute words (colours, shapes, foods...) are the same in both pools: they are what the
picture must show, and a model trained from scratch cannot know a colour word it never read.

Template slots: ``{name}`` is an attribute phrase of the spec (:func:`slots`), ``{a_name}`` the
same with its article ("an orange"); ``<word>`` is a synonym group of :data:`SYNONYMS`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D

POOLS = ("train", "test")

# group -> (train words, test words); the test words never occur in train text (a test checks it).
SYNONYMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "paint": (("paint", "draw", "make"), ("depict", "portray")),
    "painting": (("painting", "picture"), ("artwork", "canvas")),
    "build": (("build", "assemble", "make"), ("construct", "erect")),
    "show": (("with", "showing"), ("featuring", "containing")),
    "add": (("add", "put"), ("include", "incorporate")),
    "cook": (("cook", "prepare", "make"), ("concoct", "fix")),
    "howto": (("how to", "steps to"), ("guide:", "tutorial:")),
    "create": (("create", "make"), ("produce", "craft")),
    "shape": (("sculpt", "shape", "model"), ("mould", "fashion")),
    "fold": (("fold", "make"), ("pleat", "form")),
    "fill": (("fill", "colour"), ("populate", "stipple")),
}

# domain -> (train templates, test templates)
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "painting": (
        ("<paint> {a_color} {shape} {where}, {a_sky} sky above {ground}, and <add> a sun",
         "a <painting> of {a_color} {shape} {where} under {a_sky} sky above {ground}, with a sun",
         "{a_color} {shape} {where} with {a_sky} sky, {ground} ground and a sun",
         "<howto> <paint> {a_color} {shape} {where} with {a_sky} sky over {ground} and a sun"),
        ("{sky} sky over {ground}; {a_color} {shape} sits {where}; a sun shines",
         "<paint> a sun, {a_sky} sky, {ground} below it and {a_color} {shape} {where}"),
    ),
    "line_drawing": (
        ("<paint> {a_shape} {where} in {ink} ink with {hatch}, a ground line and a bird",
         "{a_ink} ink line drawing of a {shape} {where} with {hatch}, a ground line and a bird",
         "a {shape} {where} drawn in {ink} lines, {hatch}, a ground line and a bird",
         "<howto> <paint> a {ink} {shape} {where} with {hatch}, a ground line and a bird"),
        ("{ink} pen sketch: a {shape} {where}, {hatch}, a bird above a ground line",
         "outline a {shape} {where} using {ink} ink; {hatch}; a bird; a ground line"),
    ),
    "lego": (
        ("<build> a LEGO {structure} from {n} bricks in {primary} and {secondary} rows on {a_baseplate} baseplate",
         "a LEGO {structure} of {n} bricks, {primary} and {secondary} rows, on {a_baseplate} baseplate",
         "{a_structure} of {n} {primary} and {secondary} bricks on {a_baseplate} baseplate",
         "<howto> <build> {a_structure} with {n} bricks, rows of {primary} and {secondary}, on {a_baseplate} plate"),
        ("{n} bricks stacked into {a_structure}: {primary} rows alternating with {secondary}, {baseplate} base",
         "brick {structure} on {a_baseplate} base, {n} pieces, {primary} then {secondary} rows"),
    ),
    "pixel_art": (
        ("<paint> {a_color} {sprite} in pixel art on {a_background} background",
         "pixel art of {a_color} {sprite} on {a_background} background",
         "{a_color} pixel {sprite} on {a_background} background",
         "<howto> <fill> {a_color} 8x8 {sprite} sprite on {a_background} background"),
        ("8-bit sprite: {a_color} {sprite}, {background} backdrop",
         "{background} backdrop with {a_color} {sprite} drawn pixel by pixel"),
    ),
    "cooking": (
        ("<cook> {n} {raw} {plural} until {cooked} and serve on {a_plate} plate with a garnish",
         "{n} {raw} {plural} cooked until {cooked} and served on {a_plate} plate with a garnish",
         "a dish of {n} {raw} {plural} turned {cooked}, on {a_plate} plate, garnished",
         "<howto> <cook> {n} {raw} {plural} until {cooked}, then plate them on {a_plate} plate with a garnish"),
        ("recipe: {n} {raw} {plural}, cooked {cooked}, served on {a_plate} plate, garnish on top",
         "{a_plate} plate holding {n} {raw} {plural} that went {cooked} in the pot, garnish added"),
    ),
    "emoji": (
        ("<paint> {a_mood} {color} {face} emoji wearing {a_acc_color} {accessory}",
         "{a_mood} {color} {face} emoji wearing {a_acc_color} {accessory}",
         "{a_color} {face} face, {mood}, with {a_acc_color} {accessory}",
         "<howto> <paint> {a_color} {face} {mood} emoji that wears {a_acc_color} {accessory}"),
        ("icon of {a_mood} {color} {face} face; accessory: {acc_color} {accessory}",
         "{acc_color} {accessory} on {a_color} {face} emoji looking {mood}"),
    ),
    "clay": (
        ("<shape> {a_color} clay {form} with three carved grooves and a stamp",
         "{a_color} clay {form} with three carved grooves and a stamp",
         "a {form} of {color} clay, three grooves carved in it and a stamp",
         "<howto> <shape> {a_color} {form} from clay, carve three grooves and press a stamp"),
        ("{color} lump turned into a clay {form}: grooves times three, one stamp",
         "pottery {form} in {color}, stamped, three grooves"),
    ),
    "sand_art": (
        ("<create> sand art in a glass jar with {layers} layers from the bottom up",
         "sand art in a glass jar with {layers} layers from the bottom up",
         "a glass jar of sand layered {layers} from the bottom",
         "<howto> <create> a jar of {layers} sand layers, bottom first"),
        ("bottle of coloured sand: {layers}, poured upward",
         "{layers} sand poured in strata into a jar"),
    ),
    "origami": (
        ("<fold> an origami {model} from {a_color} square of paper",
         "an origami {model} folded from {a_color} square of paper",
         "{a_color} paper {model}, origami",
         "<howto> <fold> {a_color} origami {model}"),
        ("paper craft: {a_color} {model} out of one sheet",
         "{model} of {color} paper, origami style"),
    ),
}

# Colour binding (issue 26): v2's train templates always named the parts in one order (the face's colour
# before the accessory's, the sprite's before the background's...), so "the first colour word is the main
# part's" was enough to fit them. These train templates name the parts (and their colours) in other orders;
# the test templates stay as they were.
PART_ORDER_TEMPLATES: dict[str, tuple[str, ...]] = {
    "painting": ("under {a_sky} sky and over {ground}, <paint> {a_color} {shape} {where} with a sun",
                 "{ground} ground, {a_sky} sky, a sun, and {a_color} {shape} {where}"),
    "line_drawing": ("a {shape} {where} with {hatch}, a ground line and a bird, in {ink} ink",),
    "lego": ("on {a_baseplate} baseplate, <build> a LEGO {structure} of {n} bricks in {primary} and {secondary} rows",
             "{a_baseplate} baseplate under a LEGO {structure}: {n} bricks, {primary} rows first, then {secondary} rows"),
    "pixel_art": ("on {a_background} background, <paint> {a_color} {sprite} in pixel art",
                  "{a_background} background and {a_color} pixel {sprite}"),
    "cooking": ("on {a_plate} plate, serve {n} {raw} {plural} cooked until {cooked}, with a garnish",
                "{a_plate} plate with a garnish and {n} {raw} {plural} cooked until {cooked}"),
    "emoji": ("{a_mood} emoji with {a_acc_color} {accessory} and {a_color} {face} face",
              "{a_acc_color} {accessory} and {a_color} {face} face, {mood}, as an emoji"),
}
for _domain, _extra in PART_ORDER_TEMPLATES.items():
    TEMPLATES[_domain] = (TEMPLATES[_domain][0] + _extra, TEMPLATES[_domain][1])

# Captions that restate a part with its colour (train pool, half of the captions that name the part): pattern
# -> replacement, both filled with the spec's slots, first match only ("knead the lump" -> "knead the red lump").
CAPTION_BINDINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "painting": ((r"(?<!fill )\bthe {shape}\b", "the {color} {shape}"),),
    "line_drawing": ((r"\bthe {shape} outline", "the {ink} {shape} outline"),),
    "lego": ((r"\bthe baseplate\b", "the {baseplate} baseplate"),),
    "pixel_art": ((r"\bthe {sprite}\b", "the {color} {sprite}"),),
    "cooking": ((r"\bthe pieces\b", "the {raw} pieces"),),
    "emoji": ((r"^put on (an? {acc_color} {accessory})$", r"put \1 on the {color} {face} face"),
              (r"^add two eyes$", "add two eyes to the {color} face")),
    "clay": ((r"\bthe lump\b", "the {color} lump"),),
}

# the first word of a step caption -> (train replacements, test replacements); captions starting
# with another word keep it.
CAPTION_VERBS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sketch": (("sketch", "pencil"), ("delineate",)),
    "fill": (("fill", "colour"), ("flood",)),
    "paint": (("paint", "brush"), ("dab",)),
    "add": (("add", "put in"), ("introduce",)),
    "draw": (("draw", "pen"), ("trace",)),
    "place": (("place", "set"), ("position",)),
    "pour": (("pour", "tip"), ("trickle",)),
    "carve": (("carve", "cut"), ("incise",)),
    "cut": (("cut", "chop"), ("dice",)),
    "fold": (("fold", "crease"), ("bend",)),
}
CAPTION_FRAMES: dict[str, tuple[str, ...]] = {"train": ("{}", "now {}", "next, {}"), "test": ("afterwards, {}", "{} carefully")}

_SYN = re.compile(r"<(\w+)>")


def check_pool(pool: str) -> None:
    """Raise ValueError unless `pool` is ``train`` or ``test``."""
    if pool not in POOLS:
        raise ValueError(f"Unknown phrasing pool {pool!r}; use one of {', '.join(POOLS)}.")


def slots(domain: str, a: dict[str, Any]) -> dict[str, str]:
    """The attribute phrases of a spec's attributes `a`, by slot name (see the templates)."""
    where = {"left": "on the left", "center": "in the center", "right": "on the right"}
    if domain == "painting":
        out = {"color": a["color"], "shape": a["shape"], "where": where[a["position"]], "sky": a["sky"],
               "ground": a["ground"]}
    elif domain == "line_drawing":
        n = a["hatch"]
        out = {"ink": a["ink"], "shape": a["shape"], "where": where[a["position"]],
               "hatch": f"{D.number_word(n)} hatching line{'s' if n > 1 else ''}"}
    elif domain == "lego":
        out = {"structure": a["structure"], "n": D.number_word(len(a["bricks"])), "primary": a["primary"],
               "secondary": a["secondary"], "baseplate": a["baseplate"]}
    elif domain == "pixel_art":
        out = {"color": a["color"], "sprite": a["sprite"], "background": a["background"]}
    elif domain == "cooking":
        from procseq.data.synthetic.cooking import FOODS

        raw, _, cooked = FOODS[a["food"]]
        out = {"n": D.number_word(a["count"]), "raw": raw, "cooked": cooked, "plate": a["plate"],
               "plural": a["food"] if a["food"] in ("spinach", "cheese") else a["food"] + "s"}
    elif domain == "emoji":
        out = {"mood": {"smile": "smiling", "frown": "frowning", "open": "surprised"}[a["mouth"]],
               "color": a["color"], "face": {"circle": "round", "square": "square", "heart": "heart-shaped"}[a["face"]],
               "acc_color": a["accessory_color"], "accessory": a["accessory"]}
    elif domain == "clay":
        out = {"color": a["color"], "form": a["form"]}
    elif domain == "sand_art":
        c = a["layers"]
        out = {"layers": ", ".join(c[:-1]) + " and " + c[-1]}
    elif domain == "origami":
        out = {"color": a["color"], "model": a["model"]}
    else:
        raise ValueError(f"No phrasings for domain {domain!r}; known: {', '.join(sorted(TEMPLATES))}.")
    return {**out, **{f"a_{k}": D.article(v) for k, v in out.items()}}


def templates(domain: str, pool: str) -> tuple[str, ...]:
    """The prompt templates of `domain` in `pool`."""
    check_pool(pool)
    if domain not in TEMPLATES:
        raise ValueError(f"No phrasings for domain {domain!r}; known: {', '.join(sorted(TEMPLATES))}.")
    return TEMPLATES[domain][POOLS.index(pool)]


def _synonyms(text: str, pool: str, rng: np.random.Generator) -> str:
    def pick(m: re.Match) -> str:
        words = SYNONYMS[m.group(1)][POOLS.index(pool)]
        return words[int(rng.integers(len(words)))]

    return _SYN.sub(pick, text)


def fill_template(domain: str, template: str, attributes: dict[str, Any], pool: str, rng: np.random.Generator) -> str:
    """`template` with the attribute phrases of `attributes` in its slots and its ``<word>`` groups drawn from
    `pool`'s synonyms with `rng`, whitespace normalised."""
    return " ".join(_synonyms(template.format(**slots(domain, attributes)), pool, rng).split())


def phrase_prompt(domain: str, attributes: dict[str, Any], pool: str, rng: np.random.Generator) -> tuple[str, str]:
    """One phrasing of a spec's prompt from `pool`: ``(prompt, template id)``, drawn with `rng`."""
    options = templates(domain, pool)
    k = int(rng.integers(len(options)))
    return fill_template(domain, options[k], attributes, pool, rng), f"{domain}/{pool}/{k}"


def bind_colours(caption: str, domain: str, filled: dict[str, str]) -> str:
    """`caption` with the first part it names restated with its colour (:data:`CAPTION_BINDINGS`; `filled` is
    :func:`slots` of the spec), or unchanged when it names none."""
    for pattern, replacement in CAPTION_BINDINGS.get(domain, ()):
        escaped = {k: re.escape(v) for k, v in filled.items()}
        new = re.sub(pattern.format(**escaped), replacement.format(**filled), caption, count=1)
        if new != caption:
            return new
    return caption


def phrase_captions(captions: list[str], pool: str, rng: np.random.Generator, domain: str | None = None,
                    attributes: dict[str, Any] | None = None) -> list[str]:
    """The step captions reworded from `pool`: the first verb by a synonym, the sentence in a frame
    ("now ...", "next, ..."); the words that name attributes are kept. With the spec's `domain` and
    `attributes` (train pool only) half of the captions that name a coloured part restate its colour
    (:func:`bind_colours`; one more draw per caption), so a part and its colour are read together."""
    check_pool(pool)
    i = POOLS.index(pool)
    bind = pool == "train" and domain in CAPTION_BINDINGS and attributes is not None
    filled = slots(domain, attributes) if bind else {}
    out = []
    for caption in captions:
        if bind and rng.random() < 0.5:
            caption = bind_colours(caption, domain, filled)
        first, _, rest = caption.partition(" ")
        if first in CAPTION_VERBS:
            words = CAPTION_VERBS[first][i]
            caption = f"{words[int(rng.integers(len(words)))]} {rest}".strip()
        frames = CAPTION_FRAMES[pool]
        out.append(frames[int(rng.integers(len(frames)))].format(caption))
    return out


def pool_words(pool: str) -> set[str]:
    """Every word that only `pool` brings: its synonyms, caption verbs and frames, and the words of its
    templates outside the slots (for checking that test wordings never reach train)."""
    check_pool(pool)
    i = POOLS.index(pool)
    texts = [w for group in SYNONYMS.values() for w in group[i]]
    texts += [w for group in CAPTION_VERBS.values() for w in group[i]] + list(CAPTION_FRAMES[pool])
    texts += [re.sub(r"\{\w+\}|<\w+>", " ", t) for d in TEMPLATES for t in TEMPLATES[d][i]]
    return set(re.findall(r"[a-z0-9-]+", " ".join(texts).lower()))


__all__ = ["CAPTION_BINDINGS", "CAPTION_VERBS", "PART_ORDER_TEMPLATES", "POOLS", "SYNONYMS", "TEMPLATES",
           "bind_colours", "fill_template", "phrase_captions", "phrase_prompt", "pool_words",
           "slots", "templates"]
