"""Sand art: coloured sand poured into a glass jar, one layer per frame (3 to 8 frames; v1: 4).

n frames pour n layers; thinner layers get a proportionally smaller wave and checker probe (four
layers draw exactly as in v1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

BG: D.RGB = (240, 240, 245)
GLASS: D.RGB = (205, 225, 235)
RIM: D.RGB = (120, 140, 150)
LAYERS = 4  # v1's layer count; the wave and probe sizes below are for four layers
MAX_LAYERS = 8
X0, X1, Y0, Y1 = 0.2, 0.8, 0.1, 0.92
ORDINAL = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


@register
class SandArt(Domain):
    """Layered sand in a jar, poured bottom to top."""

    name = "sand_art"
    num_frames = 4
    max_frames = MAX_LAYERS
    stretches = True
    composition_axes = (D.COLORS, D.COLORS)

    def compositions(self) -> list[str]:
        return [k for k in super().compositions() if len(set(k.split("+"))) == 2]

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        bottom, top = composition
        middle = []
        prev = bottom
        for k in range(num_stages - 2):
            options = [c for c in D.COLORS if c != prev and (k < num_stages - 3 or c != top)]
            prev = options[int(rng.integers(len(options)))]
            middle.append(prev)
        return {"layers": [bottom, *middle, top], "phase": float(rng.integers(0, 8)) * 0.785,
                "grain": int(rng.integers(0, 2**31 - 1))}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        c = a["layers"]
        prompt = f"sand art in a glass jar with {', '.join(c[:-1])} and {c[-1]} layers from the bottom up"
        return prompt, [f"pour the {ORDINAL[k]} layer of {c[k]} sand" for k in range(len(c))]

    def _bands(self, spec: Spec) -> list[np.ndarray]:
        s = spec.frame_size
        ys, xs = D.pixel_grid(s)
        inside = (xs > X0 * s) & (xs < X1 * s) & (ys < Y1 * s)
        n = len(spec.attributes["layers"])
        amp = 0.025 * s * min(1.0, LAYERS / n)
        bands = []
        for k in range(n):
            top = (Y1 - (k + 1) * (Y1 - Y0) / n) * s + amp * np.sin(2 * np.pi * xs / (0.3 * s) + spec.attributes["phase"] + k)
            if k == n - 1:
                top = np.full_like(xs, Y0 * s + 1)
            bands.append(inside & (ys >= top))
        return bands

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        img = D.canvas(s, BG)
        w = max(1, s // 32)
        x0, x1, y0, y1 = int(X0 * s), int(np.ceil(X1 * s)), int(Y0 * s), int(np.ceil(Y1 * s))
        img[y0:y1 + w, x0 - w:x1 + w] = RIM
        img[y0:y1, x0:x1] = GLASS
        grain = D.speckle(s, a["grain"], 14)
        frames = []
        filled = np.zeros((s, s), bool)
        for k, band in enumerate(self._bands(spec)):
            new = band & ~filled
            sand = np.clip(np.asarray(D.PALETTE[a["layers"][k]], np.int16) + grain, 0, 255).astype(np.uint8)
            img[new] = sand[new]
            filled |= new
            frames.append(img.copy())
        return frames

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        s = spec.frame_size
        out: dict[str, Any] = {}
        ys, xs = D.pixel_grid(s)
        n = len(spec.attributes["layers"])
        for k in range(n):
            mid = (Y1 - (k + 0.5) * (Y1 - Y0) / n) * s
            probe = (np.abs(ys - mid) < 0.06 * s * min(1.0, LAYERS / n)) & (xs > (X0 + 0.05) * s) & (xs < (X1 - 0.05) * s)
            out[f"layer{k}.color"] = D.region_color(frame, probe, {"_glass": GLASS, **D.PALETTE})
        out["layers"] = sum(v is not None for v in out.values())
        return out

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        c = spec.attributes["layers"]
        out: dict[str, Any] = {f"layer{k}.color": c[k] if k <= step else None for k in range(len(c))}
        out["layers"] = step + 1
        return out

    def invariant_keys(self, spec: Spec) -> list[str]:
        return [f"layer{k}.color" for k in range(len(spec.attributes["layers"]))]
