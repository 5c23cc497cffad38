"""Attributes -> captions: the corpus's own caption grammar at any number of steps.

:func:`complete_attributes` takes the values a prompt (or a picture) names and chooses every other
attribute the way the corpus does (the domain's ``make_attributes``, seeded, deterministic), keeping
what was named; :func:`write_captions` writes one caption per step with the domain's ``describe`` and
the corpus's rule for shorter sequences (:func:`~procseq.data.synthetic.base.merge_captions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import REGISTRY, cooking, lego
from procseq.data.synthetic.base import Domain, frame_stages, merge_captions, stable_hash

COMPOSITION_KEYS: dict[str, tuple[str, str]] = {
    "painting": ("color", "shape"), "line_drawing": ("ink", "shape"), "lego": ("structure", "primary"),
    "pixel_art": ("color", "sprite"), "cooking": ("food", "plate"), "emoji": ("color", "accessory"),
    "clay": ("color", "form"), "origami": ("color", "model"),
}
"""The attributes each composition axis of a domain sets (sand art's axes are its bottom and top layers)."""


def num_stages(d: Domain, num_steps: int, asked: dict[str, Any]) -> int:
    """Process stages of the plan: a stretching domain's named count (LEGO bricks + 1, sand layers) or the
    steps asked for, within the lengths it renders; a fixed process keeps its own stages."""
    if not d.stretches:
        return d.num_frames
    lengths = d.lengths
    want = num_steps
    if d.name == "lego" and "count" in asked:
        want = asked["count"] + 1
    elif d.name == "sand_art" and len(asked.get("layers", ())) > 2:
        want = len(asked["layers"])
    return min(max(want, lengths[0]), lengths[-1])


def _composition(d: Domain, asked: dict[str, Any], rng: np.random.Generator) -> list[str]:
    if d.name == "sand_art":
        layers = asked.get("layers") or []
        keys = [k.split("+") for k in d.compositions()
                if (not layers or k.split("+")[0] == layers[0]) and (len(layers) < 2 or k.split("+")[1] == layers[-1])]
        keys = keys or [k.split("+") for k in d.compositions()]
        return keys[int(rng.integers(len(keys)))]
    if d.name == "cooking" and "food" not in asked and asked.get("cooked"):  # a cooked colour narrows the food
        foods = [f for f, (_, _, c) in cooking.FOODS.items() if c == asked["cooked"]] or list(cooking.FOODS)
        asked = {**asked, "food": foods[int(rng.integers(len(foods)))]}
    out = []
    for key, axis in zip(COMPOSITION_KEYS[d.name], d.composition_axes):
        out.append(asked[key] if asked.get(key) in axis else axis[int(rng.integers(len(axis)))])
    return out


def complete_attributes(domain: str, asked: dict[str, Any], stages: int, seed_text: str
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(attributes, chosen)``: the full spec attributes of `domain` for `stages` process stages, with every
    value in `asked` kept and the others chosen as the corpus draws them (seeded by `seed_text`); `chosen`
    holds the values that were chosen, not asked."""
    d = REGISTRY[domain]
    rng = np.random.default_rng(stable_hash("planner", domain, seed_text, stages))
    attrs = d.make_attributes(rng, _composition(d, asked, rng), stages)
    attrs.update({k: v for k, v in asked.items() if k in attrs and k != "layers"})
    if domain == "lego":
        if "primary" in asked and "secondary" not in asked:
            attrs["secondary"] = attrs["primary"]  # one colour named: the whole structure in it
        cells = lego.brick_cells(attrs["structure"], stages - 1)
        attrs["bricks"] = [{"row": r, "col": c, "color": attrs["primary"] if r % 2 == 0 else attrs["secondary"]}
                           for r, c in cells]
    elif domain == "cooking" and "count" in asked and "angle_flip" not in asked:
        attrs["count"] = asked["count"]
        attrs["angle"] = cooking.START_ANGLE[asked["count"]] + 180.0 * int(rng.integers(2))
    elif domain == "sand_art" and asked.get("layers"):  # the named layers, repeated in order to fill the jar
        attrs["layers"] = [asked["layers"][i % len(asked["layers"])] for i in range(stages)]
    chosen = {k: v for k, v in scalars(attrs).items() if k not in asked and not (k == "secondary" and "primary" in asked
                                                                                and v == attrs["primary"])}
    return attrs, chosen


def write_captions(domain: str, attrs: dict[str, Any], stages: int, num_steps: int) -> list[str]:
    """One caption per step from `attrs`, in the domain's caption grammar: ``describe`` gives one caption per
    stage; fewer steps merge stages as the corpus does, more steps repeat them evenly."""
    _, stage_captions = REGISTRY[domain].describe(attrs, stages)
    if num_steps <= stages:
        return merge_captions(stage_captions, frame_stages(stages, num_steps))
    picks = np.linspace(0, stages - 1, num_steps).round().astype(int)
    return [stage_captions[i] for i in picks]


def scalars(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes a prompt can state (text, whole numbers and lists of text; no geometry or random draws)."""
    return {k: v for k, v in attributes.items()
            if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))}


__all__ = ["COMPOSITION_KEYS", "complete_attributes", "num_stages", "scalars", "write_captions"]
