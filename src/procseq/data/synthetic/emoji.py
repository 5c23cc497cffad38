"""Emoji: face shape -> eyes -> mouth -> accessory (4 frames)."""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

FACES = ["circle", "square", "heart"]
MOUTHS = ["smile", "frown", "open"]
ACCESSORIES = ["hat", "bow", "scarf"]
DARK: D.RGB = (40, 25, 25)
CX, CY, R = 0.5, 0.56, 0.32
# where each accessory sits (x, y as fractions of the frame)
ANCHORS = {"hat": (0.5, 0.1), "bow": (0.82, 0.2), "scarf": (0.5, 0.94)}


@register
class Emoji(Domain):
    """A face drawn in layers: shape, eyes, mouth, accessory."""

    name = "emoji"
    num_frames = 4
    composition_axes = (D.COLORS, ACCESSORIES)

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        color, accessory = composition
        others = [c for c in D.COLORS if c != color]
        return {"color": color, "accessory": accessory, "face": FACES[int(rng.integers(len(FACES)))],
                "mouth": MOUTHS[int(rng.integers(len(MOUTHS)))],
                "accessory_color": others[int(rng.integers(len(others)))]}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        mouth = {"smile": "smiling", "frown": "frowning", "open": "surprised"}[a["mouth"]]
        shape = {"circle": "round", "square": "square", "heart": "heart-shaped"}[a["face"]]
        prompt = f"{D.article(mouth)} {a['color']} {shape} emoji wearing {D.article(a['accessory_color'])} {a['accessory']}"
        return prompt, [f"draw {D.article(a['color'])} {shape} face", "add two eyes",
                        f"add {D.article(mouth)} mouth", f"put on {D.article(a['accessory_color'])} {a['accessory']}"]

    def _geometry(self, spec: Spec) -> dict[str, Any]:
        s, a = spec.frame_size, spec.attributes
        w = max(1, s // 32)
        face = D.shape_mask(a["face"], s, CX * s, CY * s, R * s)
        eyes = [D.shape_mask("circle", s, round((CX + dx) * s), round(0.5 * s), max(1.6, 0.055 * s)) for dx in (-0.12, 0.12)]
        y0, y1 = 0.66 * s, 0.74 * s
        pts = {"smile": [(0.38, y0), (0.45, y1), (0.55, y1), (0.62, y0)],
               "frown": [(0.38, y1), (0.45, y0), (0.55, y0), (0.62, y1)]}
        if a["mouth"] == "open":
            mouth = D.shape_mask("circle", s, CX * s, 0.7 * s, 0.07 * s)
        else:
            p = [(x * s, y) for x, y in pts[a["mouth"]]]
            mouth = D.line_mask(s, p[0], p[1], w) | D.line_mask(s, p[1], p[2], w) | D.line_mask(s, p[2], p[3], w)
        acc = {
            "hat": D.shape_mask("square", s, 0.5 * s, 0.12 * s, 0.14 * s, 0.09 * s)
            | D.shape_mask("square", s, 0.5 * s, 0.21 * s, 0.24 * s, 0.03 * s + 0.5),
            "bow": D.shape_mask("bow", s, 0.8 * s, 0.2 * s, 0.13 * s, 0.08 * s),
            "scarf": D.shape_mask("square", s, 0.5 * s, 0.93 * s, 0.26 * s, 0.05 * s),
        }[a["accessory"]]
        mouth_box = np.zeros((s, s), bool)
        mouth_box[int(0.6 * s): int(0.8 * s), int(0.3 * s): int(0.7 * s)] = True
        eye_box = np.zeros((s, s), bool)
        eye_box[int(0.4 * s): int(0.6 * s), int(0.3 * s): int(0.7 * s)] = True
        return {"face": face, "eyes": eyes, "mouth": mouth, "acc": acc, "w": w,
                "mouth_box": mouth_box, "eye_box": eye_box}

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        g = self._geometry(spec)
        rgb = D.PALETTE[a["color"]]
        img = D.canvas(s, D.WHITE)
        D.paint(img, g["face"], rgb)
        D.paint(img, D.outline(g["face"], g["w"]), D.shade(rgb, 0.6))
        frames = [img.copy()]
        for e in g["eyes"]:
            D.paint(img, e, DARK)
        frames.append(img.copy())
        D.paint(img, g["mouth"], DARK)
        frames.append(img.copy())
        D.paint(img, g["acc"], D.PALETTE[a["accessory_color"]])
        frames.append(img)
        return frames

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        s = spec.frame_size
        g = self._geometry(spec)
        cheeks = np.zeros((s, s), bool)
        cheeks[int(0.57 * s): int(0.64 * s), int(0.35 * s): int(0.65 * s)] = True
        color = D.region_color(frame, cheeks, {"_bg": D.WHITE, **D.PALETTE})
        out: dict[str, Any] = {"face.shape": None, "face.color": color, "eyes": 0, "mouth": None,
                               "accessory": None, "accessory.color": None}
        if color is None:
            return out
        base = D.PALETTE[color]
        others = {k: v for k, v in D.PALETTE.items() if k != color}
        cands = {"face": base, "edge": D.shade(base, 0.6), "dark": DARK, "_bg": D.WHITE, **others}
        lab = D.label_image(frame, cands)
        comps = D.components(lab <= 2, min_size=4)
        face_mask = D.fill_holes(comps[0]) if comps else np.zeros((s, s), bool)
        out["face.shape"] = D.best_shape(face_mask, FACES)
        dark = (lab == 2) & D.erode(face_mask, g["w"])
        out["eyes"] = len(D.components(dark & g["eye_box"], min_size=2))
        m = dark & g["mouth_box"]
        if m.sum() >= 3:
            cx, _, rx, ry = D.bbox(m)  # type: ignore[misc]
            if rx < 1.6 * ry:
                out["mouth"] = "open"
            else:
                ys, xs = np.nonzero(m)
                ends = np.abs(xs + 0.5 - cx) > 0.6 * rx
                out["mouth"] = "smile" if ys[ends].mean() < ys[~ends].mean() else "frown"
        acc = (lab >= 4) & ~D.dilate(face_mask, g["w"])
        parts = D.components(acc, min_size=max(4, s * s // 200))
        acc = parts[0] if parts else acc & False
        if acc.any():
            names = list(cands)
            out["accessory.color"] = D.mode([names[i] for i in lab[acc]])
            x, y = (c / s for c in D.centroid(acc))  # type: ignore[union-attr]
            out["accessory"] = min(ANCHORS, key=lambda k: (ANCHORS[k][0] - x) ** 2 + (ANCHORS[k][1] - y) ** 2)
        return out

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        return {"face.shape": a["face"], "face.color": a["color"], "eyes": 2 if step >= 1 else 0,
                "mouth": a["mouth"] if step >= 2 else None,
                "accessory": a["accessory"] if step >= 3 else None,
                "accessory.color": a["accessory_color"] if step >= 3 else None}

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["face.shape", "face.color", "mouth", "accessory", "accessory.color"]
