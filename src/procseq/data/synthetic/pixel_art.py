"""Pixel art: an 8x8 sprite filled cell by cell in reading order (9 frames).

Frame 0 is the empty background with its cell grid; frames 1-8 each fill the next eighth of the
sprite's cells (top-left to bottom-right).
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


def sprite_chunks(sprite: str) -> list[list[tuple[int, int]]]:
    """The sprite's filled cells in reading order, split into eight consecutive chunks."""
    cells = [tuple(rc) for rc in np.argwhere(SPRITES[sprite])]
    return [list(map(tuple, c)) for c in np.array_split(np.array(cells), N)]


@register
class PixelArt(Domain):
    """An 8x8 sprite filled in reading order."""

    name = "pixel_art"
    num_frames = 9
    composition_axes = (D.COLORS, list(SPRITES))

    def make_attributes(self, rng: np.random.Generator, composition: list[str]) -> dict[str, Any]:
        color, sprite = composition
        return {"color": color, "sprite": sprite, "background": list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]}

    def describe(self, a: dict[str, Any]) -> tuple[str, list[str]]:
        prompt = f"pixel art of {D.article(a['color'])} {a['sprite']} on {D.article(a['background'])} background"
        caps = [f"prepare an empty 8x8 grid on {D.article(a['background'])} background"]
        caps += [f"fill the next {a['color']} pixels of the {a['sprite']}, part {k + 1} of 8" for k in range(7)]
        caps.append(f"place the last {a['color']} pixels to finish the {a['sprite']}")
        return prompt, caps

    @staticmethod
    def _cell(s: int) -> tuple[int, int]:
        c = s // N
        return c, (s - c * N) // 2

    def render(self, spec: Spec) -> list[np.ndarray]:
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
        for chunk in sprite_chunks(a["sprite"]):
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

    def expected(self, spec: Spec, step: int) -> dict[str, Any]:
        a = spec.attributes
        n = sum(len(ch) for ch in sprite_chunks(a["sprite"])[:step])
        return {
            "background": a["background"],
            "color": a["color"] if step >= 1 else None,
            "filled": n,
            "sprite": a["sprite"] if step == self.num_frames - 1 else None,
        }

    def invariant_keys(self, spec: Spec) -> list[str]:
        return ["background", "color", "sprite"]
