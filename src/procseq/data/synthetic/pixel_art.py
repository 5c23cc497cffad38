"""Pixel art: an 8x8 sprite filled cell by cell in reading order (any length from 3 to 16; v1: 9).

Frame 0 is the empty background with its cell grid; each later frame fills the next part of the
sprite's cells (top-left to bottom-right): n frames, n - 1 parts (eight in v1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Domain, Spec, register

_SPRITES = {
    "heart": ["........", ".##..##.", "########", "########", ".######.", "..####..", "...##...", "........"],
    "house": ["...##...", "..####..", ".######.", "########", ".##..##.", ".##..##.", ".######.", ".######."],
    "tree": ["...##...", "..####..", ".######.", "..####..", ".######.", "########", "...##...", "...##..."],
    "ghost": ["..####..", ".######.", "##.##.##", "########", "########", "########", "########", "#.#..#.#"],
    "arrow": ["...##...", "..####..", ".######.", "########", "...##...", "...##...", "...##...", "...##..."],
    "cat": ["#......#", "##....##", "########", "#.####.#", "########", ".######.", ".######.", "..#..#.."],
}
SPRITES: dict[str, np.ndarray] = {k: np.array([[ch == "#" for ch in row] for row in v]) for k, v in _SPRITES.items()}
BACKGROUNDS: dict[str, D.RGB] = {"white": D.WHITE, "black": (30, 30, 30), "light blue": (170, 210, 240)}
N = 8
MAX_MISMATCH = 2


def sprite_chunks(sprite: str, parts: int = N) -> list[list[tuple[int, int]]]:
    """The sprite's filled cells in reading order, split into `parts` consecutive chunks."""
    cells = [tuple(rc) for rc in np.argwhere(SPRITES[sprite])]
    return [list(map(tuple, c)) for c in np.array_split(np.array(cells), parts)]


@register
class PixelArt(Domain):
    """An 8x8 sprite filled in reading order."""

    name = "pixel_art"
    num_frames = 9
    max_frames = 16
    stretches = True
    composition_axes = (D.COLORS, list(SPRITES))

    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        color, sprite = composition
        return {"color": color, "sprite": sprite, "background": list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]}

    def describe(self, a: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        parts = num_stages - 1
        prompt = f"pixel art of {D.article(a['color'])} {a['sprite']} on {D.article(a['background'])} background"
        caps = [f"prepare an empty 8x8 grid on {D.article(a['background'])} background"]
        caps += [f"fill the next {a['color']} pixels of the {a['sprite']}, part {k + 1} of {parts}" for k in range(parts - 1)]
        caps.append(f"place the last {a['color']} pixels to finish the {a['sprite']}")
        return prompt, caps

    @staticmethod
    def _cell(s: int) -> tuple[int, int]:
        c = s // N
        return c, (s - c * N) // 2

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        a, s = spec.attributes, spec.frame_size
        c, off = self._cell(s)
        bg = BACKGROUNDS[a["background"]]
        img = D.canvas(s, bg)
        line = D.shade(bg, 0.85) if a["background"] != "black" else (55, 55, 55)
        for k in range(N + 1):
            img[off + k * c: off + k * c + 1, off: off + N * c] = line
            img[off: off + N * c, off + k * c: off + k * c + 1] = line
        frames = [img.copy()]
        rgb = D.PALETTE[a["color"]]
        for chunk in sprite_chunks(a["sprite"], spec.num_frames - 1):
            for r, q in chunk:
                img[off + r * c: off + (r + 1) * c, off + q * c: off + (q + 1) * c] = rgb
            frames.append(img.copy())
        return frames

    def read_cells(self, frame: np.ndarray, spec: Spec) -> tuple[np.ndarray, list[str | None]]:
        """Per-cell classification: (8x8 bool filled, per-cell colour name or None for background)."""
        s = spec.frame_size
        c, off = self._cell(s)
        lo, hi = (1, c) if c >= 3 else (0, c)
        block = frame[off: off + N * c, off: off + N * c].reshape(N, c, N, c, 3)[:, lo:hi, :, lo:hi]
        med = np.median(block.transpose(0, 2, 1, 3, 4).reshape(N, N, -1, 3).astype(np.float32), axis=2)
        names = list(BACKGROUNDS) + D.COLORS
        ref = np.asarray([BACKGROUNDS.get(n) or D.PALETTE[n] for n in names], np.float32)
        idx = ((med[:, :, None, :] - ref) ** 2).sum(-1).argmin(-1)
        labels = [names[i] for i in idx.ravel()]
        filled = (idx >= len(BACKGROUNDS)).reshape(N, N)
        return filled, labels

    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        filled, labels = self.read_cells(frame, spec)
        bgs = [l for l in labels if l in BACKGROUNDS]
        fgs = [l for l in labels if l not in BACKGROUNDS]
        mismatch = {k: int((v != filled).sum()) for k, v in SPRITES.items()}
        best = min(mismatch, key=mismatch.get)  # type: ignore[arg-type]
        return {
            "background": max(set(bgs), key=bgs.count) if bgs else None,
            "color": max(set(fgs), key=fgs.count) if fgs else None,
            "filled": int(filled.sum()),
            "sprite": best if mismatch[best] <= MAX_MISMATCH else None,
        }

    def expected_stage(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        n = sum(len(ch) for ch in sprite_chunks(a["sprite"], spec.num_frames - 1)[:step])
        return {
            "background": a["background"],
            "color": a["color"] if step >= 1 else None,
            "filled": n,
            # the checker names the sprite once at most MAX_MISMATCH of its cells are missing
            "sprite": a["sprite"] if int(SPRITES[a["sprite"]].sum()) - n <= MAX_MISMATCH else None,
        }

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["background", "color", "sprite"]
