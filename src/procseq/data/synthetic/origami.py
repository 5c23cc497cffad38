"""Origami: a square sheet folded step by step into a model (4 frames).

Square sheet -> triangle (diagonal fold) -> diamond (corners folded in) -> the final model;
each fold leaves one more crease.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

MODELS = {"house": "house", "boat": "boat", "heart": "heart", "star": "star"}
SHAPES = ["square", "triangle", "diamond", *MODELS.values()]
BG: D.RGB = (225, 215, 200)
STEP_R = [0.38, 0.38, 0.32, 0.36]
CREASE_X = [-0.3, 0.0, 0.3]


@register
class Origami(Domain):
    """Folding a paper model from a square sheet."""

    name = "origami"
    num_frames = 4
    composition_axes = (D.COLORS, list(MODELS))

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        color, model = composition
        return {"color": color, "model": model}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        return f"an origami {a['model']} folded from {D.article(a['color'])} square of paper", [
            f"start with a square sheet of {a['color']} paper", "fold it in half along the diagonal",
            "fold the corners in to a diamond", f"shape the final folds into a {a['model']}"]

    def _shape(self, spec: Spec, step: int) -> str:
        return ["square", "triangle", "diamond", MODELS[spec.attributes["model"]]][step]

    def _geometry(self, spec: Spec, step: int) -> tuple[np.ndarray, list[np.ndarray]]:
        s = spec.frame_size
        w = max(1, s // 32)
        r = STEP_R[step] * s
        mask = D.shape_mask(self._shape(spec, step), s, s / 2, s / 2, r)
        ys, xs = D.pixel_grid(s)
        inner = D.erode(mask, 2 * w)
        band = np.abs(ys - s / 2) <= 0.25 * r
        creases = [inner & band & (np.abs(xs - (np.floor(s / 2 + dx * r) + 0.5)) < w / 2 + 0.01) for dx in CREASE_X]
        return mask, creases[:step]

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        rgb = D.PALETTE[spec.attributes["color"]]
        frames = []
        for step in range(self.num_frames):
            img = D.canvas(spec.frame_size, BG)
            mask, creases = self._geometry(spec, step)
            D.paint(img, mask, rgb)
            for c in creases:
                D.paint(img, c, D.shade(rgb, 0.6))
            frames.append(img)
        return frames

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        s = spec.frame_size
        w = max(1, s // 32)
        paper = D.differs(frame, BG, 50)
        comps = D.components(paper, min_size=4)
        if not comps:
            return {"color": None, "shape": None, "creases": 0}
        mask = D.fill_holes(comps[0])
        color = D.region_color(frame, D.erode(mask, w), D.PALETTE)
        rgb = D.PALETTE[color]  # type: ignore[index]
        crease = D.close_to(frame, D.shade(rgb, 0.6), [rgb, BG]) & D.erode(mask, w)
        return {"color": color, "shape": D.best_shape(mask, SHAPES), "creases": len(D.components(crease))}

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        return {"color": spec.attributes["color"], "shape": self._shape(spec, step), "creases": step}

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["color"]
