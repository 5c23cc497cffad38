"""Drawing and reading primitives shared by every synthetic domain (numpy only).

Drawing: a palette of clearly distinct colours, shape masks normalised to their bounding box
(so a shape drawn in the box ``cx +/- rx, cy +/- ry`` fills it), lines, bands, erosion.
Reading: the tolerant measurements the checkers are built from -- nearest-palette colour of a
region median, best-IoU shape template fitted to a mask's bounding box, connected components,
centroid column/cell. None of them compares pixels exactly, so they survive the noise and blur
of a small generative model.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RGB = tuple[int, int, int]

# Eight clearly distinct attribute colours (pairwise RGB distance > 90).
PALETTE: dict[str, RGB] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (245, 215, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "purple": (140, 55, 190),
    "pink": (245, 130, 200),
    "brown": (115, 70, 30),
}
COLORS: list[str] = list(PALETTE)
WHITE: RGB = (250, 250, 250)
BLACK: RGB = (25, 25, 25)
GRAY: RGB = (150, 150, 150)
CREAM: RGB = (245, 238, 220)

# Shapes whose templates are mutually distinguishable by IoU at 32 px.
SHAPES: list[str] = ["circle", "square", "triangle", "diamond", "star", "cross", "heart", "house", "boat", "bow"]


def shade(rgb: RGB, factor: float) -> RGB:
    """Darken (`factor` < 1) a colour."""
    return tuple(int(round(c * factor)) for c in rgb)  # type: ignore[return-value]


def tint(rgb: RGB, amount: float) -> RGB:
    """Mix a colour with white (`amount` in [0, 1])."""
    return tuple(int(round(c + (255 - c) * amount)) for c in rgb)  # type: ignore[return-value]


def canvas(size: int, rgb: RGB) -> np.ndarray:
    """A `(size, size, 3)` uint8 image filled with `rgb`."""
    out = np.empty((size, size, 3), np.uint8)
    out[...] = rgb
    return out


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------

_STAR = [
    (np.sin(np.pi * k / 5) * (1.0 if k % 2 == 0 else 0.45), -np.cos(np.pi * k / 5) * (1.0 if k % 2 == 0 else 0.45))
    for k in range(10)
]
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": [(0, -1), (1, 1), (-1, 1)],
    "diamond": [(0, -1), (1, 0), (0, 1), (-1, 0)],
    "star": _STAR,
    "house": [(0, -1), (1, -0.15), (1, 1), (-1, 1), (-1, -0.15)],
    "boat": [(-1, -1), (1, -1), (0.5, 1), (-0.5, 1)],
    "bow": [(-1, -1), (0, -0.3), (1, -1), (1, 1), (0, 0.3), (-1, 1)],
}


def _normalise(points: list[tuple[float, float]]) -> np.ndarray:
    """Scale a polygon so its bounding box is exactly [-1, 1] x [-1, 1]."""
    p = np.asarray(points, float)
    lo, hi = p.min(0), p.max(0)
    return (p - (lo + hi) / 2) / ((hi - lo) / 2)


_POLYGONS_N = {k: _normalise(v) for k, v in _POLYGONS.items()}


def _in_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over the points (u, v)."""
    inside = np.zeros(u.shape, bool)
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if y1 == y2:
            continue
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


def unit_shape(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of normalised points (box [-1, 1]^2) in `shape`."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "cross":
        box = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
        return box & ((np.abs(u) <= 0.36) | (np.abs(v) <= 0.36))
    if shape == "heart":
        lobes = ((u - 0.5) ** 2 + (v + 0.45) ** 2 <= 0.3) | ((u + 0.5) ** 2 + (v + 0.45) ** 2 <= 0.3)
        tip = (v >= -0.45) & (v <= 1.0) & (np.abs(u) <= 1.0 * (1.0 - v) / 1.45)
        return (lobes | tip) & (v >= -1.0)
    if shape in _POLYGONS_N:
        return _in_polygon(u, v, _POLYGONS_N[shape])
    raise ValueError(f"Unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}.")


@lru_cache(maxsize=16)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) pixel-centre coordinates of a `(size, size)` image (cached, read-only)."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


@lru_cache(maxsize=8192)
def _shape_mask(shape: str, size: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    ys, xs = pixel_grid(size)
    m = unit_shape(shape, (xs - cx) / rx, (ys - cy) / ry)
    m.flags.writeable = False
    return m


def shape_mask(shape: str, size: int, cx: float, cy: float, rx: float, ry: float | None = None) -> np.ndarray:
    """Boolean `(size, size)` mask of `shape` filling the box ``cx +/- rx, cy +/- ry`` (cached, read-only)."""
    return _shape_mask(shape, size, round(cx, 3), round(cy, 3), round(rx, 3), round(ry if ry else rx, 3))


@lru_cache(maxsize=4096)
def _line_mask(size: int, x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    ys, xs = pixel_grid(size)
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    m = (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2 <= (width / 2) ** 2
    m.flags.writeable = False
    return m


def line_mask(size: int, p0: tuple[float, float], p1: tuple[float, float], width: float = 1.0) -> np.ndarray:
    """Boolean mask of a segment from `p0` to `p1` (x, y) with the given width (cached, read-only)."""
    r = lambda a: round(float(a), 3)  # noqa: E731
    return _line_mask(size, r(p0[0]), r(p0[1]), r(p1[0]), r(p1[1]), max(float(width), 1.0))


def erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """4-neighbour binary erosion, `steps` times."""
    m = mask.copy()
    for _ in range(steps):
        p = np.pad(m, 1, constant_values=False)
        m = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m


def dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """4-neighbour binary dilation, `steps` times."""
    m = mask.copy()
    for _ in range(steps):
        p = np.pad(m, 1, constant_values=False)
        m = m | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return m


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner boundary ring of `mask`."""
    return mask & ~erode(mask, width)


def paint(img: np.ndarray, mask: np.ndarray, rgb: RGB) -> np.ndarray:
    """Fill `mask` of `img` with `rgb` in place; returns `img`."""
    img[mask] = rgb
    return img


def speckle(size: int, seed: int, amount: int = 12) -> np.ndarray:
    """Deterministic `(size, size, 1)` int16 noise in [-amount, amount] (sand, paper grain)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-amount, amount + 1, (size, size, 1)).astype(np.int16)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def median_color(img: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Per-channel median of the pixels under `mask` (None for an empty mask)."""
    if not mask.any():
        return None
    return np.median(img[mask].astype(np.float32), axis=0)


def nearest(rgb: np.ndarray | None, candidates: dict[str, RGB | None] | dict[str, RGB]) -> str | None:
    """Name of the candidate colour nearest to `rgb`; a candidate whose name starts with ``_`` reads as None."""
    if rgb is None:
        return None
    names = list(candidates)
    ref = np.asarray([candidates[n] for n in names], np.float32)
    name = names[int(np.argmin(((ref - rgb) ** 2).sum(1)))]
    return None if name.startswith("_") else name


def region_color(img: np.ndarray, mask: np.ndarray, candidates: dict[str, RGB]) -> str | None:
    """Nearest candidate colour of the median over `mask` (``_``-prefixed candidates read as None)."""
    return nearest(median_color(img, mask), candidates)


def label_image(img: np.ndarray, candidates: dict[str, RGB]) -> np.ndarray:
    """`(H, W)` index into ``list(candidates)`` of the nearest candidate colour of every pixel."""
    ref = np.asarray(list(candidates.values()), np.float32)
    return ((img.astype(np.float32)[:, :, None, :] - ref) ** 2).sum(-1).argmin(-1)


def label_pixels(img: np.ndarray, mask: np.ndarray, candidates: dict[str, RGB]) -> list[str]:
    """Name of the nearest candidate colour for every pixel under `mask`."""
    names = list(candidates)
    return [names[i] for i in label_image(img, candidates)[mask]]


def mode(values: list[str], ignore_underscore: bool = True) -> str | None:
    """Most frequent value (ties broken by name); ``_``-prefixed names are ignored."""
    vals = [v for v in values if not (ignore_underscore and v.startswith("_"))]
    return max(sorted(set(vals)), key=vals.count) if vals else None


def differs(img: np.ndarray, rgb: RGB | np.ndarray, threshold: float = 60.0) -> np.ndarray:
    """Mask of pixels farther than `threshold` (RGB distance) from `rgb`."""
    d = img.astype(np.float32) - np.asarray(rgb, np.float32)
    return (d * d).sum(-1) > threshold * threshold


def close_to(img: np.ndarray, rgb: RGB, others: list[RGB]) -> np.ndarray:
    """Mask of pixels nearer to `rgb` than to every colour in `others`."""
    px = img.astype(np.float32)
    d0 = ((px - np.asarray(rgb, np.float32)) ** 2).sum(-1)
    out = np.ones(d0.shape, bool)
    for o in others:
        out &= d0 < ((px - np.asarray(o, np.float32)) ** 2).sum(-1)
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` plus every background region not connected to the image border."""
    outside = np.zeros_like(mask)
    outside[0, :], outside[-1, :], outside[:, 0], outside[:, -1] = (
        ~mask[0, :], ~mask[-1, :], ~mask[:, 0], ~mask[:, -1])
    free = ~mask
    while True:
        grown = dilate(outside) & free
        if (grown == outside).all():
            return ~outside
        outside = grown


def components(mask: np.ndarray, min_size: int = 1) -> list[np.ndarray]:
    """8-connected components of `mask` with at least `min_size` pixels, largest first."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        p = np.pad(lab, 1, constant_values=big)
        m = lab
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                m = np.minimum(m, p[dy:dy + h, dx:dx + w])
        new = np.where(mask, m, big)
        new = np.where(mask, new.ravel()[np.clip(new.ravel() - 1, 0, h * w - 1)].reshape(h, w), big)  # pointer jump
        new = np.where(new > lab, lab, new)
        if (new == lab).all():
            break
        lab = new
    labels, counts = np.unique(lab[mask], return_counts=True)
    comps = [lab == lbl for lbl, c in sorted(zip(labels, counts), key=lambda t: -t[1]) if c >= min_size]
    return comps


def bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(cx, cy, rx, ry) of the pixel bounding box of `mask` (None when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2


def shape_ious(mask: np.ndarray, shapes: list[str]) -> dict[str, float]:
    """IoU of `mask` with each template fitted to the mask's bounding box."""
    box = bbox(mask)
    if box is None:
        return {s: 0.0 for s in shapes}
    out = {}
    for s in shapes:
        t = shape_mask(s, mask.shape[0], *box)
        out[s] = float((t & mask).sum() / max((t | mask).sum(), 1))
    return out


def best_shape(mask: np.ndarray, shapes: list[str], min_iou: float = 0.0) -> str | None:
    """The best-IoU template among `shapes` (None if the mask is empty or no IoU reaches `min_iou`)."""
    ious = shape_ious(mask, shapes)
    name = max(ious, key=ious.get)  # type: ignore[arg-type]
    return name if ious[name] > 0 and ious[name] >= min_iou else None


def centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centroid of `mask` in pixels (pixel centres), None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


COLUMNS = ["left", "center", "right"]
ROWS = ["top", "middle", "bottom"]


def column_of(mask: np.ndarray) -> str | None:
    """"left" / "center" / "right": the third of the image holding the centroid of `mask`."""
    c = centroid(mask)
    return None if c is None else COLUMNS[min(int(3 * c[0] / mask.shape[1]), 2)]


NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen", "sixteen"]


def article(word: str) -> str:
    """``"a red"`` / ``"an orange"``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def number_word(n: int) -> str:
    """English word for a small count."""
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)
