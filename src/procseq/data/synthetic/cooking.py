"""Cooking: ingredients prepared, combined, transformed, plated (4 frames).

Frame 0: the cut pieces of one ingredient on a board. Frame 1: the pieces in a pot. Frame 2: the
pot after cooking, filled with the cooked colour. Frame 3: a mound on a plate with three
garnish leaves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

# name -> (raw colour, piece shape, cooked colour)
FOODS: dict[str, tuple[str, str, str]] = {
    "tomato": ("red", "circle", "orange"),
    "carrot": ("orange", "triangle", "brown"),
    "cheese": ("yellow", "square", "orange"),
    "spinach": ("green", "diamond", "brown"),
    "blueberry": ("blue", "circle", "purple"),
    "plum": ("purple", "diamond", "red"),
}
PIECE_SHAPES = ["circle", "triangle", "square", "diamond"]
PLATES: dict[str, D.RGB] = {"white": D.WHITE, "light blue": (170, 210, 240), "light green": (190, 235, 190),
                            "cream": (250, 235, 160)}
TABLE: D.RGB = (215, 205, 200)
BOARD: D.RGB = (190, 150, 100)
POT_RIM: D.RGB = (70, 70, 80)
POT_IN: D.RGB = (125, 125, 135)
GARNISH = "green"
SCENE = {"_table": TABLE, "_board": BOARD, "_rim": POT_RIM, "_pot": POT_IN}
PIECE_R, RING_R, WORK_R, CENTER_R = 0.13, 0.25, 0.37, 0.09
START_ANGLE = {2: 0.0, 3: -90.0, 4: 45.0}


@register
class Cooking(Domain):
    """Prepare, combine, cook and plate one ingredient."""

    name = "cooking"
    num_frames = 4
    composition_axes = (list(FOODS), list(PLATES))

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        food, plate = composition
        n = int(rng.integers(2, 5))
        return {"food": food, "plate": plate, "count": n, "angle": START_ANGLE[n] + 180.0 * int(rng.integers(2))}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        raw, _, cooked = FOODS[a["food"]]
        n = D.number_word(a["count"])
        plural = a["food"] if a["food"] in ("spinach", "cheese") else a["food"] + "s"
        prompt = f"{n} {raw} {plural} cooked until {cooked} and served on {D.article(a['plate'])} plate with a garnish"
        return prompt, [
            f"cut {n} {raw} pieces of {a['food']} on the board",
            "combine the pieces in the pot",
            f"cook until the mixture turns {cooked}",
            f"plate it on the {a['plate']} plate and garnish with three leaves",
        ]

    def _geometry(self, spec: Spec) -> dict[str, Any]:
        s, a = spec.frame_size, spec.attributes
        c = s / 2
        pieces = []
        for k in range(a["count"]):
            t = np.deg2rad(a["angle"] + 360.0 * k / a["count"])
            pieces.append(D.shape_mask(FOODS[a["food"]][1], s, round(c + RING_R * s * np.cos(t)),
                                       round(c + RING_R * s * np.sin(t)), PIECE_R * s))
        leaves = [D.shape_mask("diamond", s, c + 0.14 * s * np.cos(t), c + 0.14 * s * np.sin(t), max(2.0, 0.06 * s))
                  for t in np.deg2rad([-90.0, 30.0, 150.0])]
        return {
            "board": D.shape_mask("square", s, c, c, 0.42 * s, 0.4 * s),
            "pot": D.shape_mask("circle", s, c, c, 0.44 * s),
            "pot_in": D.shape_mask("circle", s, c, c, 0.38 * s),
            "plate": D.shape_mask("circle", s, c, c, 0.46 * s),
            "mound": D.shape_mask("circle", s, c, c, 0.24 * s),
            "work": D.shape_mask("circle", s, c, c, WORK_R * s),
            "center": D.shape_mask("circle", s, c, c, CENTER_R * s),
            "rim": D.shape_mask("circle", s, c, c, 0.45 * s) & ~D.shape_mask("circle", s, c, c, 0.38 * s),
            "pieces": pieces, "leaves": leaves,
        }

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        g = self._geometry(spec)
        raw, _, cooked = (D.PALETTE[x] if i != 1 else x for i, x in enumerate(FOODS[a["food"]]))
        frames = []
        img = D.canvas(s, TABLE)
        D.paint(img, g["board"], BOARD)
        for p in g["pieces"]:
            D.paint(img, p, raw)
        frames.append(img)
        img = D.canvas(s, TABLE)
        D.paint(img, g["pot"], POT_RIM)
        D.paint(img, g["pot_in"], POT_IN)
        for p in g["pieces"]:
            D.paint(img, p, raw)
        frames.append(img)
        img = D.canvas(s, TABLE)
        D.paint(img, g["pot"], POT_RIM)
        D.paint(img, g["pot_in"], cooked)
        frames.append(img)
        img = D.canvas(s, TABLE)
        D.paint(img, g["plate"], PLATES[a["plate"]])
        D.paint(img, g["mound"], cooked)
        for leaf in g["leaves"]:
            D.paint(img, leaf, D.PALETTE[GARNISH])
        frames.append(img)
        return frames

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        g = self._geometry(spec)
        plate = D.region_color(frame, g["rim"], {**PLATES, **SCENE})
        cooked = D.region_color(frame, g["center"], {**SCENE, **{f"_{k}": v for k, v in PLATES.items()}, **D.PALETTE})
        raw = count = shape = None
        if cooked is None:  # pieces are only visible before cooking
            labels = D.label_pixels(frame, g["work"], {**SCENE, **D.PALETTE})
            raw = D.mode(labels)
            if raw is not None:
                mask = D.close_to(frame, D.PALETTE[raw], list(SCENE.values())) & g["work"]
                comps = D.components(mask, min_size=3)
                count = len(comps)
                shape = D.mode([D.best_shape(c, PIECE_SHAPES) or "_" for c in comps])
        garnish = 0
        if plate is not None:
            leaf = D.close_to(frame, D.PALETTE[GARNISH], [PLATES[plate]] + ([D.PALETTE[cooked]] if cooked else []))
            garnish = len(D.components(leaf & g["mound"], min_size=1))
        return {"food.color": raw, "food.shape": shape, "count": count, "cooked": cooked, "plate": plate,
                "garnish": garnish}

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        raw, shape, cooked = FOODS[a["food"]]
        return {
            "food.color": raw if step <= 1 else None,
            "food.shape": shape if step <= 1 else None,
            "count": a["count"] if step <= 1 else None,
            "cooked": cooked if step >= 2 else None,
            "plate": a["plate"] if step == 3 else None,
            "garnish": 3 if step == 3 else 0,
        }

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["food.color", "food.shape", "count", "cooked", "plate"]
