"""Line drawing: ink strokes accumulate on white paper (9 frames).

The outline of a shape is drawn in four strokes (clockwise from the top), then up to three
hatching lines inside it, a ground line, and a bird in the sky.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

SHAPES = ["circle", "square", "triangle", "diamond", "house"]
INKS = ["red", "green", "blue", "purple", "brown", "orange"]
X = {"left": 0.28, "center": 0.5, "right": 0.72}
CY, R, GROUND = 0.45, 0.25, 0.86
HATCH_V = {"circle": [-0.4, 0.0, 0.4], "square": [-0.45, 0.0, 0.45], "triangle": [-0.1, 0.25, 0.6],
           "diamond": [-0.4, 0.0, 0.4], "house": [-0.05, 0.3, 0.65]}
INK_COLORS: dict[str, D.RGB] = {k: D.PALETTE[k] for k in INKS}


@register
class LineDrawing(Domain):
    """Stroke-by-stroke ink drawing of one shape with hatching and a ground line."""

    name = "line_drawing"
    num_frames = 9
    composition_axes = (INKS, SHAPES)

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        ink, shape = composition
        return {"ink": ink, "shape": shape, "position": list(X)[int(rng.integers(3))],
                "hatch": int(rng.integers(1, 4))}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        n = a["hatch"]
        hatch = f"{D.number_word(n)} hatching line{'s' if n > 1 else ''}"
        where = "in the center" if a["position"] == "center" else f"on the {a['position']}"
        prompt = f"{D.article(a['ink'])} ink line drawing of a {a['shape']} {where} with {hatch}, a ground line and a bird"
        caps = [f"draw the first stroke of the {a['shape']} outline", "continue the outline",
                "draw the third stroke of the outline", f"close the {a['shape']} outline"]
        for i in range(3):
            caps.append(f"add hatching line {i + 1}" if i < n else "pause and check the proportions")
        caps += ["draw the ground line", "sketch a bird in the sky"]
        # frames where no hatching is added still differ: a small tick mark is added to the ground
        return prompt, caps

    # geometry ---------------------------------------------------------------------------------

    def _geometry(self, spec: Spec) -> dict[str, Any]:
        s, a = spec.frame_size, spec.attributes
        w = max(1, s // 32)
        cx, cy, r = X[a["position"]] * s, CY * s, R * s
        filled = D.shape_mask(a["shape"], s, cx, cy, r)
        ring = D.outline(filled, w)
        ys, xs = np.mgrid[0:s, 0:s] + 0.5
        angle = np.mod(np.arctan2(xs - cx, -(ys - cy)), 2 * np.pi)  # clockwise from the top
        quarter = np.minimum((angle / (np.pi / 2)).astype(int), 3)
        inner = D.erode(filled, 2 * w)
        hatches = [inner & (np.abs(ys - (np.floor(cy + v * r) + 0.5)) < w / 2 + 0.01) for v in HATCH_V[a["shape"]]]
        bird_x = 0.15 * s if a["position"] != "left" else 0.85 * s
        bird = (D.line_mask(s, (bird_x - 0.07 * s, 0.07 * s), (bird_x, 0.12 * s), w)
                | D.line_mask(s, (bird_x, 0.12 * s), (bird_x + 0.07 * s, 0.07 * s), w))
        gy = GROUND * s
        ground = D.line_mask(s, (0.08 * s, gy), (0.92 * s, gy), w)
        ticks = [D.line_mask(s, ((0.2 + 0.1 * i) * s if a["position"] == "right" else (0.8 - 0.1 * i) * s, gy + 2 * w),
                             ((0.2 + 0.1 * i) * s if a["position"] == "right" else (0.8 - 0.1 * i) * s, gy + 3 * w), w)
                 for i in range(3)]
        return {"filled": filled, "ring": ring, "quarter": quarter, "hatches": hatches, "bird": bird,
                "ground": ground, "ticks": ticks, "w": w, "gy": gy, "bird_x": bird_x}

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        g = self._geometry(spec)
        ink = INK_COLORS[a["ink"]]
        img = D.canvas(s, D.WHITE)
        frames = []
        for q in range(4):
            D.paint(img, g["ring"] & (g["quarter"] == q), ink)
            frames.append(img.copy())
        for i in range(3):
            D.paint(img, g["hatches"][i] if i < a["hatch"] else g["ticks"][i], ink)
            frames.append(img.copy())
        D.paint(img, g["ground"], ink)
        frames.append(img.copy())
        D.paint(img, g["bird"], ink)
        frames.append(img)
        return frames

    # checker ----------------------------------------------------------------------------------

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        s = spec.frame_size
        g = self._geometry(spec)
        inked = D.differs(frame, D.WHITE, 70)
        dist = ((frame.astype(np.float32) - np.asarray(D.WHITE, np.float32)) ** 2).sum(-1)
        strong = inked & (dist >= np.percentile(dist[inked], 60)) if inked.any() else inked
        ink = D.region_color(frame, strong, INK_COLORS)
        body = inked.copy()
        body[int(g["gy"]) - g["w"]:] = False
        body[: int(0.16 * s)] = False
        comps = D.components(body, min_size=3)
        shape = position = None
        hatch = 0
        if comps:
            line = comps[0]
            filled = D.fill_holes(line)
            interior = filled & ~line
            if interior.sum() >= 0.5 * line.sum():
                shape = D.best_shape(filled, SHAPES)
                position = D.column_of(filled)
                hatch = len(D.components(inked & D.erode(filled, g["w"]), min_size=2))
        band = np.zeros((s, s), bool)
        band[int(g["gy"]) - g["w"]: int(g["gy"]) + g["w"] + 1, int(0.1 * s): int(0.9 * s)] = True
        sky = np.zeros((s, s), bool)
        x0 = int(g["bird_x"] - 0.1 * s)
        sky[: int(0.16 * s), max(0, x0): x0 + int(0.2 * s)] = True
        return {
            "ink": ink,
            "shape": shape,
            "position": position,
            "hatch": hatch if shape is not None else None,
            "ground": bool(inked[band].mean() > 0.3),
            "bird": bool(inked[sky].sum() >= 3),
        }

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        closed = step >= 3
        return {
            "ink": a["ink"],
            "shape": a["shape"] if closed else None,
            "position": a["position"] if closed else None,
            "hatch": (min(step - 3, a["hatch"]) if closed else None),
            "ground": step >= 7,
            "bird": step >= 8,
        }

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["ink", "shape", "position"]
