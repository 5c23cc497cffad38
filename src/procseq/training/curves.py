"""Loss curves as PNG, drawn with PIL alone (no plotting dependency)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from procseq.outputs import atomic_file


def read_log(path: str | Path, key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) pairs of `key` from a ``log.jsonl`` written by the trainers."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [(int(r["step"]), float(r[key])) for r in rows if key in r and math.isfinite(float(r[key]))]


def plot_curves(curves: dict[str, list[tuple[int, float]]], out_png: str | Path, log_y: bool = True,
                size: tuple[int, int] = (640, 360), smooth: int = 5) -> Path:
    """One panel per named curve (x: step, y: value, log scale by default, moving average of `smooth`)."""
    if not curves or not any(curves.values()):
        raise ValueError("No points to plot; is the training log empty?")
    w, h = size
    panels = [(name, pts) for name, pts in curves.items() if pts]
    img = Image.new("RGB", (w, h * len(panels)), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    for p, (name, pts) in enumerate(panels):
        top = p * h
        left, right, y0, y1 = 60, w - 15, top + 25, top + h - 30
        xs = [s for s, _ in pts]
        ys = [v for _, v in pts]
        if smooth > 1:
            ys = [sum(ys[max(0, i - smooth + 1): i + 1]) / len(ys[max(0, i - smooth + 1): i + 1]) for i in range(len(ys))]
        f = (lambda v: math.log10(max(v, 1e-12))) if log_y else (lambda v: v)
        fy = [f(v) for v in ys]
        lo, hi = min(fy), max(fy)
        hi = hi if hi > lo else lo + 1
        x_hi = max(xs) if max(xs) > min(xs) else min(xs) + 1

        def to_px(x: float, y: float) -> tuple[float, float]:
            return (left + (x - min(xs)) / (x_hi - min(xs)) * (right - left), y1 - (y - lo) / (hi - lo) * (y1 - y0))

        draw.rectangle([left, y0, right, y1], outline=(160, 160, 160))
        draw.line([to_px(x, y) for x, y in zip(xs, fy)], fill=(30, 90, 200), width=2)
        draw.text((left, top + 6), f"{name}{' (log10)' if log_y else ''}", fill="black", font=font)
        for frac in (0.0, 0.5, 1.0):
            v = lo + frac * (hi - lo)
            label = f"{10 ** v:.3g}" if log_y else f"{v:.3g}"
            draw.text((4, to_px(min(xs), v)[1] - 6), label, fill="black", font=font)
        draw.text((left, y1 + 6), str(min(xs)), fill="black", font=font)
        draw.text((right - 40, y1 + 6), f"step {max(xs)}", fill="black", font=font)
    out = Path(out_png)
    with atomic_file(out) as tmp:
        img.save(tmp, format="PNG")
    return out
