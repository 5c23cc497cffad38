"""Does the training text still let "the first colour word is the main part's colour" fit? Before (v2's train
templates, captions as written) and after (the part-order templates and colour-restating captions of issue 26).

    python -m experiments.colour_binding [--specs 500]

Per domain with two or more coloured parts, over train-pool prompts (one phrasing per spec, specs whose parts
share a colour left out): the share whose first colour word is NOT the colour of the part drawn first, and
the share of the commonest "part named by the first colour word" (1.00: the shortcut always works). And the
share of step captions that name a part by its noun with its colour before it (LEGO: the baseplate only).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

import numpy as np

from procseq.data.synthetic import get_domain
from procseq.data.synthetic.base import stable_hash
from procseq.data.synthetic.cooking import FOODS
from procseq.data.synthetic.phrasing import PART_ORDER_TEMPLATES, fill_template, phrase_captions, templates

# domain -> (part -> the attribute giving its colour), the part drawn first
PARTS = {
    "emoji": ({"face": "color", "accessory": "accessory_color"}, "face"),
    "pixel_art": ({"sprite": "color", "background": "background"}, "background"),
    "lego": ({"primary rows": "primary", "secondary rows": "secondary", "baseplate": "baseplate"}, "baseplate"),
    "cooking": ({"food": "raw", "plate": "plate"}, "food"),
}


def colours(domain: str, attrs: dict) -> dict[str, str]:
    attrs = {**attrs, "raw": FOODS[attrs["food"]][0]} if domain == "cooking" else attrs
    return {part: attrs[key] for part, key in PARTS[domain][0].items()}


def noun_colours(domain: str, attrs: dict, named: dict[str, str]) -> list[tuple[str, str]]:
    """(the noun a caption names a part by, its colour) for the parts that captions name by a noun."""
    nouns = {"emoji": {"face": "face", "accessory": attrs.get("accessory")},
             "pixel_art": {"sprite": attrs.get("sprite"), "background": "background"},
             "lego": {"baseplate": "baseplate"}, "cooking": {"food": "pieces", "plate": "plate"}}[domain]
    return [(noun, named[part]) for part, noun in nouns.items()]


def first_part(text: str, named: dict[str, str]) -> str | None:
    where = {p: m.start() for p, c in named.items() if (m := re.search(rf"\b{re.escape(c)}\b", text))}
    return min(where, key=where.get) if where else None


def measure(domain: str, specs: int, after: bool) -> tuple[float, float, float, int]:
    pool = [t for t in templates(domain, "train") if after or t not in PART_ORDER_TEMPLATES.get(domain, ())]
    firsts: list[str] = []
    bound = total = 0
    for i in range(specs):
        rng = np.random.default_rng([11, stable_hash("binding", domain, i)])
        spec = get_domain(domain).sample(rng, 32, "train", None)
        named = colours(domain, spec.attributes)
        caps = phrase_captions(spec.captions, "train", rng, *((domain, spec.attributes) if after else ()))
        total += len(caps)
        nouns = noun_colours(domain, spec.attributes, named)
        bound += sum(any(re.search(rf"\b{re.escape(c)} ([a-z-]+ )?{re.escape(noun)}\b", cap) for noun, c in nouns)
                     for cap in caps)
        if len(set(named.values())) < len(named):
            continue  # two parts of one colour: the first colour word names both
        prompt = fill_template(domain, pool[int(rng.integers(len(pool)))], spec.attributes, "train", rng)
        firsts.append(first_part(prompt, named) or "none")
    counts = Counter(firsts)
    not_first_drawn = 1 - counts[PARTS[domain][1]] / len(firsts)
    return not_first_drawn, counts.most_common(1)[0][1] / len(firsts), bound / total, len(firsts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=500)
    args = ap.parse_args()
    print(f"{'domain':10s} {'text':7s} {'first colour word not the first-drawn part':>44s} "
          f"{'commonest first part':>21s} {'captions part+colour':>21s}  n")
    for domain in PARTS:
        for label, after in (("before", False), ("after", True)):
            a, b, c, n = measure(domain, args.specs, after)
            print(f"{domain:10s} {label:7s} {a:44.2f} {b:21.2f} {c:21.2f}  {n}")


if __name__ == "__main__":
    main()
