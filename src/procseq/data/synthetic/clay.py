"""Clay: rough mass -> refined form -> surface detail (9 frames).

Frames 0-2 are lumpy masses (unions of random discs, checked to match no form template), frame 3
the refined form, frame 4 smooths it (a highlight), frames 5-7 carve one groove each, frame 8
presses a stamp.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

FORMS = {"ball": "circle", "block": "square", "cone": "triangle", "gem": "diamond"}
BG: D.RGB = (232, 228, 222)
TABLE: D.RGB = (95, 95, 105)
CX, CY, R = 0.5, 0.48, 0.3
GROOVE_V = [0.05, 0.35, 0.65]
FORM_IOU, ROUGH_IOU = 0.8, 0.7


def _lump(lobes: list[list[float]], s: int) -> np.ndarray:
    mask = np.zeros((s, s), bool)
    for dx, dy, r in lobes:
        mask |= D.shape_mask("circle", s, (CX + dx) * s, (CY + dy) * s, r * s)
    return mask


def _overlapping(lobes: list[list[float]]) -> bool:
    """Whether the discs form one connected mass with generous overlaps (at any resolution)."""
    reached, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for j, (x, y, r) in enumerate(lobes):
            xi, yi, ri = lobes[i]
            if j not in reached and (x - xi) ** 2 + (y - yi) ** 2 < (0.8 * (r + ri)) ** 2:
                reached.add(j)
                todo.append(j)
    return len(reached) == len(lobes)


@register
class Clay(Domain):
    """Sculpting a clay form from a lump, then carving its surface."""

    name = "clay"
    num_frames = 9
    composition_axes = (D.COLORS, list(FORMS))

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        color, form = composition
        lumps = []
        while len(lumps) < 3:
            lobes = [[round(float(rng.uniform(-0.2, 0.2)), 3), round(float(rng.uniform(-0.14, 0.14)), 3),
                      round(float(rng.uniform(0.07, 0.15)), 3)] for _ in range(int(rng.integers(3, 6)))]
            if _overlapping(lobes) and all(max(D.shape_ious(_lump(lobes, s), list(FORMS.values())).values()) < ROUGH_IOU
                                           for s in (32,)):
                lumps.append(lobes)
        return {"color": color, "form": form, "lumps": lumps}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        prompt = f"{D.article(a['color'])} clay {a['form']} with three carved grooves and a stamp"
        return prompt, [f"place a rough lump of {a['color']} clay on the table", "knead the lump",
                        "rough out the mass", f"refine it into a {a['form']}", "smooth the surface",
                        "carve the first groove", "carve the second groove", "carve the third groove",
                        "press a stamp near the top"]

    def _geometry(self, spec: Spec) -> dict[str, Any]:
        s, a = spec.frame_size, spec.attributes
        w = max(1, s // 32)
        form = D.shape_mask(FORMS[a["form"]], s, CX * s, CY * s, R * s)
        inner = D.erode(form, 2 * w)
        ys, xs = np.mgrid[0:s, 0:s] + 0.5
        grooves = [inner & (np.abs(ys - (np.floor((CY + v * R) * s) + 0.5)) < w / 2 + 0.01) for v in GROOVE_V]
        stamp = D.shape_mask("square", s, round(CX * s), round((CY - 0.3 * R) * s), max(1.0, 0.03 * s))
        light = form & ((xs - (CX - 0.35 * R) * s) ** 2 + (ys - (CY - 0.05 * R) * s) ** 2 <= (0.15 * R * s) ** 2)
        table = np.zeros((s, s), bool)
        table[int(0.86 * s):] = True
        return {"form": form, "grooves": grooves, "stamp": stamp, "light": light, "table": table, "w": w}

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        g = self._geometry(spec)
        rgb = D.PALETTE[a["color"]]
        empty = D.canvas(s, BG)
        D.paint(empty, g["table"], TABLE)
        frames = []
        for lobes in a["lumps"]:
            img = empty.copy()
            frames.append(D.paint(img, _lump(lobes, s), rgb))
        img = D.paint(empty.copy(), g["form"], rgb)
        frames.append(img.copy())
        D.paint(img, g["light"], D.tint(rgb, 0.45))
        frames.append(img.copy())
        for groove in g["grooves"]:
            D.paint(img, groove, D.shade(rgb, 0.5))
            frames.append(img.copy())
        D.paint(img, g["stamp"], D.shade(rgb, 0.5))
        frames.append(img)
        return frames

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        g = self._geometry(spec)
        lab = D.label_image(frame, {"_bg": BG, "_table": TABLE, **D.PALETTE})
        names = ["_bg", "_table"] + D.COLORS
        top = ~g["table"]
        color = D.mode([names[i] for i in lab[top & (lab >= 2)]])
        out: dict[str, Any] = {"color": color, "form": None, "grooves": None, "stamp": None}
        if color is None:
            return out
        rgb = D.PALETTE[color]
        mass = D.differs(frame, BG, 50) & top
        comps = D.components(mass, min_size=4)
        if not comps:
            return out
        mass = D.fill_holes(comps[0])
        ious = D.shape_ious(mass, list(FORMS.values()))
        best = max(ious, key=ious.get)  # type: ignore[arg-type]
        if ious[best] < FORM_IOU:
            return out
        out["form"] = {v: k for k, v in FORMS.items()}[best]
        cut = D.close_to(frame, D.shade(rgb, 0.5), [rgb, D.tint(rgb, 0.45), BG]) & D.erode(mass, g["w"])
        marks = D.components(cut, min_size=1)
        long = [m for m in marks if D.bbox(m)[2] >= 2 * D.bbox(m)[3]]  # type: ignore[index]
        out["grooves"] = len(long)
        out["stamp"] = len(marks) > len(long)
        return out

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        refined = step >= 3
        return {"color": a["color"], "form": a["form"] if refined else None,
                "grooves": min(3, max(0, step - 4)) if refined else None, "stamp": (step >= 8) if refined else None}

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["color", "form"]
