"""LEGO: bottom-up brick assembly on a baseplate (any length from 3 to 16 frames; v1: 9).

Frame 0 is the empty baseplate; each later frame places one brick (n frames: n - 1 bricks, eight
in v1), row by row from the bottom, so every brick rests on the baseplate or on a brick below. Rows
alternate between a primary and a secondary colour. A structure with other than eight bricks takes
the first bricks of its build order (:data:`BUILD_ORDER`), whose first eight are v1's structure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

# Column heights of the eight-brick (v1) structures (4 columns).
STRUCTURES: dict[str, list[int]] = {
    "tower": [0, 4, 4, 0], "wall": [2, 2, 2, 2], "pyramid": [1, 3, 3, 1], "stairs": [1, 2, 2, 3],
}
# (row, col) of all 16 cells in the order a structure grows; every prefix rests on what is below it,
# and the first eight are the STRUCTURES heights.
BUILD_ORDER: dict[str, list[tuple[int, int]]] = {
    "tower": [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2),
              (0, 0), (0, 3), (1, 0), (1, 3), (2, 0), (2, 3), (3, 0), (3, 3)],
    "wall": [(r, c) for r in range(4) for c in range(4)],
    "pyramid": [(0, 1), (0, 2), (0, 0), (0, 3), (1, 1), (1, 2), (2, 1), (2, 2),
                (1, 0), (1, 3), (3, 1), (3, 2), (2, 0), (2, 3), (3, 0), (3, 3)],
    "stairs": [(0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 3),
               (2, 2), (3, 3), (2, 1), (3, 2), (1, 0), (3, 1), (2, 0), (3, 0)],
}
BASEPLATES: dict[str, D.RGB] = {"green": D.PALETTE["green"], "gray": (165, 165, 165), "blue": D.PALETTE["blue"]}
BRICKS = 8
COLS, ROWS = 4, 4
X0, BW, TOP, BH = 0.1, 0.2, 0.86, 0.18
ORDINAL = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
           "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth"]


def brick_cells(structure: str, bricks: int = BRICKS) -> list[tuple[int, int]]:
    """(row, col) of each of `bricks` bricks in placement order: bottom row first, left to right."""
    if not 1 <= bricks <= COLS * ROWS:
        raise ValueError(f"A LEGO structure has 1 to {COLS * ROWS} bricks, got {bricks}.")
    return sorted(BUILD_ORDER[structure][:bricks], key=lambda rc: (rc[0], rc[1]))


@register
class Lego(Domain):
    """Bottom-up assembly of an eight-brick structure."""

    name = "lego"
    num_frames = 9
    max_frames = COLS * ROWS
    stretches = True
    composition_axes = (list(STRUCTURES), D.COLORS)

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        structure, primary = composition
        others = [c for c in D.COLORS if c != primary]
        secondary = others[int(rng.integers(len(others)))]
        cells = brick_cells(structure, num_stages - 1)
        colors = [primary if r % 2 == 0 else secondary for r, _ in cells]
        return {"structure": structure, "primary": primary, "secondary": secondary,
                "baseplate": list(BASEPLATES)[int(rng.integers(len(BASEPLATES)))],
                "bricks": [{"row": r, "col": c, "color": col} for (r, c), col in zip(cells, colors)]}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        prompt = (f"a LEGO {a['structure']} of {D.number_word(len(a['bricks']))} bricks, {a['primary']} and {a['secondary']} rows, "
                  f"on {D.article(a['baseplate'])} baseplate")
        caps = [f"lay out the {a['baseplate']} baseplate"]
        for j, b in enumerate(a["bricks"]):
            where = "on the baseplate" if b["row"] == 0 else f"on row {b['row'] + 1}"
            caps.append(f"place the {ORDINAL[j]} brick, {b['color']}, {where}")
        return prompt, caps

    # geometry ---------------------------------------------------------------------------------

    @staticmethod
    def _cell_box(s: int, row: int, col: int) -> tuple[int, int, int, int]:
        x0 = int(round((X0 + col * BW) * s))
        x1 = int(round((X0 + (col + 1) * BW) * s))
        y1 = int(round((TOP - row * BH) * s))
        y0 = int(round((TOP - (row + 1) * BH) * s))
        return x0, x1, y0, y1

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        w = max(1, s // 32)
        img = D.canvas(s, D.WHITE)
        top = int(round(TOP * s))
        img[top:] = BASEPLATES[a["baseplate"]]
        img[top: top + w] = D.shade(BASEPLATES[a["baseplate"]], 0.7)
        frames = [img.copy()]
        for b in a["bricks"]:
            x0, x1, y0, y1 = self._cell_box(s, b["row"], b["col"])
            rgb = D.PALETTE[b["color"]]
            img[y0:y1, x0:x1] = D.shade(rgb, 0.6)
            img[y0 + w: y1 - w, x0 + w: x1 - w] = rgb
            sw = max(1, (x1 - x0) // 3)
            sx = (x0 + x1) // 2 - sw // 2
            img[y0 - w: y0, sx: sx + sw] = rgb  # stud, hidden by the brick placed above
            frames.append(img.copy())
        return frames

    # checker ----------------------------------------------------------------------------------

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        a, s = spec.attributes, spec.frame_size
        w = max(1, s // 32)
        out: dict[str, Any] = {}
        plate = np.zeros((s, s), bool)
        plate[int(round(TOP * s)) + 2 * w:] = True
        out["baseplate"] = D.region_color(frame, plate, BASEPLATES)
        occupied = 0
        for r in range(ROWS):
            for c in range(COLS):
                x0, x1, y0, y1 = self._cell_box(s, r, c)
                cell = np.zeros((s, s), bool)
                cell[y0 + w: y1 - w, x0 + w: x1 - w] = True
                color = D.region_color(frame, cell, {"_bg": D.WHITE, **D.PALETTE})
                occupied += color is not None
                for j, b in enumerate(a["bricks"]):
                    if (b["row"], b["col"]) == (r, c):
                        out[f"brick{j}.color"] = color
        out["count"] = occupied
        return out

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        out: dict[str, Any] = {"baseplate": a["baseplate"]}
        for j, b in enumerate(a["bricks"]):
            out[f"brick{j}.color"] = b["color"] if j < step else None
        out["count"] = step
        return out

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["baseplate"] + [f"brick{j}.color" for j in range(len(spec.attributes["bricks"]))]
