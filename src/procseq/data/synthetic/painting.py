"""Painting: pencil sketch -> flat colour -> background washes -> shading -> details (9 frames).

One object (shape, colour, left/center/right) above a horizon, a sky and a ground wash, then
shading, a highlight, a dark contour and a sun.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

SHAPES = ["circle", "square", "triangle", "diamond", "star"]
SKIES: dict[str, D.RGB] = {"day": (135, 195, 240), "sunset": (250, 175, 115), "night": (20, 30, 110)}
GROUNDS: dict[str, D.RGB] = {"grass": (70, 130, 50), "sand": (215, 190, 120), "snow": (225, 235, 245)}
SUN: D.RGB = (255, 225, 60)
INK: D.RGB = (30, 30, 30)
X = {"left": 0.25, "center": 0.5, "right": 0.75}
CY, R, HORIZON = 0.42, 0.2, 0.78

CAPTIONS = [
    "sketch the outline of the {shape} in pencil",
    "sketch the horizon line",
    "fill the {shape} with flat {color} paint",
    "wash the {sky} sky",
    "paint the {ground} ground",
    "add shading to the {shape}",
    "add a highlight",
    "ink a dark contour around the {shape}",
    "paint the sun as a finishing detail",
]


@register
class Painting(Domain):
    """Sketch, flat colour, washes, shading and details of one object in a landscape."""

    name = "painting"
    num_frames = 9
    composition_axes = (D.COLORS, SHAPES)

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        color, shape = composition
        sky = list(SKIES)[int(rng.integers(len(SKIES)))]
        return {
            "color": color, "shape": shape, "position": list(X)[int(rng.integers(3))],
            "sky": sky, "ground": list(GROUNDS)[int(rng.integers(len(GROUNDS)))],
            "sun_side": "left" if rng.random() < 0.5 else "right",
        }

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        where = "in the center" if a["position"] == "center" else f"on the {a['position']}"
        prompt = (f"a painting of {D.article(a['color'])} {a['shape']} {where} under {D.article(a['sky'])} sky "
                  f"above {a['ground']}, with a sun")
        return prompt, [c.format(**a) for c in CAPTIONS]

    # geometry ---------------------------------------------------------------------------------

    def _geometry(self, spec: Spec) -> dict[str, Any]:
        s, a = spec.frame_size, spec.attributes
        obj = D.shape_mask(a["shape"], s, X[a["position"]] * s, CY * s, R * s)
        w = max(1, s // 32)
        hy = int(HORIZON * s)
        sun_x = (0.1 if a["sun_side"] == "left" else 0.9) * s
        sun_x = sun_x if abs(sun_x - X[a["position"]] * s) > 0.3 * s else s - sun_x
        sun = D.shape_mask("circle", s, sun_x, 0.11 * s, 0.08 * s)
        ys, xs = np.mgrid[0:s, 0:s]
        lower_right = (xs - X[a["position"]] * s) + (ys - CY * s) > 0.45 * R * s
        upper_left = (xs - X[a["position"]] * s) ** 2 + (ys - (CY - 0.35 * R) * s) ** 2 <= (0.25 * R * s) ** 2
        return {
            "obj": obj, "w": w, "hy": hy, "sun": sun,
            "shade": obj & lower_right & D.erode(obj, w),
            "light": obj & upper_left & D.erode(obj, w),
            "sky": np.arange(s)[:, None].repeat(s, 1) < hy,
        }

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        g = self._geometry(spec)
        base = D.PALETTE[a["color"]]
        img = D.canvas(s, D.CREAM)
        frames: list[np.ndarray] = []
        D.paint(img, D.outline(g["obj"], g["w"]), D.GRAY)
        frames.append(img.copy())
        img[g["hy"]:g["hy"] + g["w"]] = D.GRAY
        frames.append(img.copy())
        D.paint(img, g["obj"], base)
        frames.append(img.copy())
        D.paint(img, g["sky"] & ~g["obj"], SKIES[a["sky"]])
        frames.append(img.copy())
        img[g["hy"]:] = GROUNDS[a["ground"]]
        frames.append(img.copy())
        D.paint(img, g["shade"], D.shade(base, 0.7))
        frames.append(img.copy())
        D.paint(img, g["light"], D.tint(base, 0.55))
        frames.append(img.copy())
        D.paint(img, D.outline(g["obj"], g["w"]), INK)
        frames.append(img.copy())
        D.paint(img, g["sun"], SUN)
        frames.append(img)
        return frames

    # checker ----------------------------------------------------------------------------------

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        s = spec.frame_size
        g = self._geometry(spec)
        hy = g["hy"]
        top = np.zeros((s, s), bool)
        top[: max(2, s // 16)] = True
        top &= ~D.dilate(g["sun"], 2)
        sky = D.region_color(frame, top, {"_canvas": D.CREAM, **SKIES})
        band = np.zeros((s, s), bool)
        band[hy + 2 * g["w"]:] = True
        ground = D.region_color(frame, band, {"_canvas": D.CREAM, **GROUNDS})
        # the object: pixels that differ from the local background above the horizon
        bg = D.CREAM if sky is None else SKIES[sky]
        fg = D.differs(frame, bg, 55) & g["sky"]
        fg &= ~D.dilate(g["sun"], 1)
        fg[hy - g["w"]:] = False
        comps = D.components(fg, min_size=4)
        obj = D.fill_holes(comps[0]) if comps else np.zeros((s, s), bool)
        inner = D.erode(obj, g["w"])
        color = D.region_color(frame, inner, {"_canvas": D.CREAM, "_sky": bg, **D.PALETTE})
        contour = False
        if color is not None:
            base = D.PALETTE[color]
            ring = D.outline(obj, g["w"])
            dark = D.close_to(frame, INK, [base, D.shade(base, 0.7), bg])
            contour = bool(ring.any() and dark[ring].mean() > 0.6)
        shaded = light = False
        if color is not None:
            base = D.PALETTE[color]
            px = D.close_to(frame, D.shade(base, 0.7), [base, INK, D.tint(base, 0.55)])
            shaded = bool(g["shade"].any() and px[g["shade"]].mean() > 0.5)
            lx = D.close_to(frame, D.tint(base, 0.55), [base, D.shade(base, 0.7)])
            light = bool(g["light"].any() and lx[g["light"]].mean() > 0.5)
        return {
            "obj0.shape": D.best_shape(obj, SHAPES) if obj.any() else None,
            "obj0.color": color,
            "obj0.position": D.column_of(obj),
            "sky": sky,
            "ground": ground,
            "shading": shaded,
            "highlight": light,
            "contour": contour,
            "sun": D.region_color(frame, g["sun"], {"sun": SUN, "_c": D.CREAM, **{f"_{k}": v for k, v in SKIES.items()}})
            == "sun",
        }

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        return {
            "obj0.shape": a["shape"],
            "obj0.color": a["color"] if step >= 2 else None,
            "obj0.position": a["position"],
            "sky": a["sky"] if step >= 3 else None,
            "ground": a["ground"] if step >= 4 else None,
            "shading": step >= 5,
            "highlight": step >= 6,
            "contour": step >= 7,
            "sun": step >= 8,
        }

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["obj0.shape", "obj0.color", "obj0.position", "sky", "ground"]
