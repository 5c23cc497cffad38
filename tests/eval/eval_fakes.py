"""A tiny fake synthetic domain ("fill") for the evaluation tests, registered next to the real ones.

(A plain module, not conftest.py, so its name cannot clash with other test folders' conftests.)

Step i of 4 fills the bottom (i + 1) quarters of the frame with the spec's colour; from step 2 a
marker square sits in the top-right corner. The checker reads colour, fill level and marker back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from procseq.data import synthetic

PALETTE = {
    "white": (255, 255, 255), "red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220),
    "yellow": (240, 220, 40), "black": (0, 0, 0), "magenta": (230, 0, 230),
}
FILL_COLORS = ["red", "green", "blue", "yellow"]
MARKERS = ["black", "magenta"]


def _nearest(rgb: np.ndarray) -> str:
    return min(PALETTE, key=lambda k: float(np.sum((np.asarray(PALETTE[k], float) - rgb) ** 2)))


class FillDomain:
    name = "fill"
    num_frames = 4

    def __init__(self, spec_cls: type) -> None:
        self.spec_cls = spec_cls

    def sample(self, rng: np.random.Generator, frame_size: int, split: str) -> Any:
        color = FILL_COLORS[int(rng.integers(len(FILL_COLORS)))]
        marker = MARKERS[int(rng.integers(len(MARKERS)))]
        return self.make(color, marker, frame_size, split)

    def make(self, color: str, marker: str, frame_size: int = 32, split: str = "train", seed: int = 0) -> Any:
        prompt = f"a {color} fill with a {marker} marker"
        captions = [f"fill quarter {i + 1} with {color}" for i in range(self.num_frames)]
        captions[2] += f", add the {marker} marker"
        return self.spec_cls(domain="fill", seed=seed, split=split, frame_size=frame_size,
                             num_frames=self.num_frames, prompt=prompt, captions=captions,
                             attributes={"color": color, "marker": marker}, composition=f"{color}+{marker}")

    def render(self, spec: Any) -> list[np.ndarray]:
        s = spec.frame_size
        frames = []
        for i in range(spec.num_frames):
            f = np.full((s, s, 3), 255, np.uint8)
            f[s - (i + 1) * s // 4 :, :] = PALETTE[spec.attributes["color"]]
            if i >= 2:
                f[1:5, s - 5 : s - 1] = PALETTE[spec.attributes["marker"]]
            frames.append(f)
        return frames

    def read(self, frame: np.ndarray, spec: Any) -> dict[str, Any]:
        s = frame.shape[0]
        col = frame[:, s // 2].astype(float)
        filled = [r for r in range(s) if _nearest(col[r]) != "white"]
        level = round(len(filled) / (s / 4)) if filled else 0
        color = _nearest(frame[s - 2, s // 2].astype(float))
        marker = _nearest(frame[2:4, s - 4 : s - 2].reshape(-1, 3).mean(0))
        return {
            "color": None if color == "white" else color,
            "level": level,
            "marker": marker if marker in MARKERS else None,
        }

    def expected(self, spec: Any, step: int) -> dict[str, Any]:
        return {"color": spec.attributes["color"], "level": step + 1,
                "marker": spec.attributes["marker"] if step >= 2 else None}

    def invariant_keys(self, spec: Any) -> list[str]:
        return ["color", "marker"]


def register_fill(monkeypatch: pytest.MonkeyPatch) -> FillDomain:
    """Register the fake domain in the synthetic registry until the test ends."""
    domain = FillDomain(synthetic.Spec)
    monkeypatch.setitem(synthetic.REGISTRY, "fill", domain)
    return domain


def fill_record(domain: FillDomain, color: str, marker: str, split: str = "train", seed: int = 0) -> dict[str, Any]:
    """A dataset record (load_split format) of the fake domain."""
    spec = domain.make(color, marker, split=split, seed=seed)
    return {"prompt": spec.prompt, "domain": "fill", "captions": spec.captions,
            "num_frames": spec.num_frames, "spec": spec.to_dict()}
