"""LEGO: bottom-up brick assembly on a baseplate (9 frames).

Frame 0 is the empty baseplate; each later frame places one of eight bricks, row by row from the
bottom, so every brick rests on the baseplate or on a brick below. Rows alternate between a
primary and a secondary colour.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

# Column heights (4 columns, 8 bricks each).
STRUCTURES: dict[str, list[int]] = {
    "tower": [0, 4, 4, 0], "wall": [2, 2, 2, 2], "pyramid": [1, 3, 3, 1], "stairs": [1, 2, 2, 3],
}
BASEPLATES: dict[str, D.RGB] = {"green": D.PALETTE["green"], "gray": (165, 165, 165), "blue": D.PALETTE["blue"]}
BRICKS = 8
COLS, ROWS = 4, 4
X0, BW, TOP, BH = 0.1, 0.2, 0.86, 0.18
ORDINAL = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


def brick_cells(structure: str) -> list[tuple[int, int]]:
    """(row, col) of each brick in placement order: bottom row first, left to right."""
    heights = STRUCTURES[structure]
    return sorted(((r, c) for c, h in enumerate(heights) for r in range(h)), key=lambda rc: (rc[0], rc[1]))


@register
class Lego(Domain):
    """Bottom-up assembly of an eight-brick structure."""

    name = "lego"
    num_frames = 9
    composition_axes = (list(STRUCTURES), D.COLORS)

    def make_attributes(self, rng: np.random.Generator, composition: list[str]) -> dict[str, Any]:
        structure, primary = composition
        others = [c for c in D.COLORS if c != primary]
        secondary = others[int(rng.integers(len(others)))]
        cells = brick_cells(structure)
        colors = [primary if r % 2 == 0 else secondary for r, _ in cells]
        return {"structure": structure, "primary": primary, "secondary": secondary,
                "baseplate": list(BASEPLATES)[int(rng.integers(len(BASEPLATES)))],
                "bricks": [{"row": r, "col": c, "color": col} for (r, c), col in zip(cells, colors)]}

    def describe(self, a: dict[str, Any]) -> tuple[str, list[str]]:
        prompt = (f"a LEGO {a['structure']} of eight bricks, {a['primary']} and {a['secondary']} rows, "
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

    def render(self, spec: Spec) -> list[np.ndarray]:
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

    def expected(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        out: dict[str, Any] = {"baseplate": a["baseplate"]}
        for j, b in enumerate(a["bricks"]):
            out[f"brick{j}.color"] = b["color"] if j < step else None
        out["count"] = step
        return out

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["baseplate"] + [f"brick{j}.color" for j in range(BRICKS)]
