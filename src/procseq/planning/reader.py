"""Picture -> the domain's attributes, with the corpus checker: plans of ReCraft and continuation.

The corpus checker (``Domain.read``) reads attributes back from pixels given a spec's geometry (where
the object is, which structure, which face). :func:`read_attributes` tries each geometry the domain can
have (the hypotheses below), reads the colours and kinds with the checker under it, re-renders the
frame from what it read, and keeps the reading whose re-rendering is closest to the picture; a picture
no reading re-renders within :data:`READ_TOLERANCE` (a photograph, an unrelated drawing) is "cannot read"
(None). :func:`picture_planner` turns the reading into a plan in the domain's caption grammar, or falls
back to the given planner with a one-line note in ``plan.meta["note"]``.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from procseq.conditioning.plan import Plan
from procseq.data.synthetic import REGISTRY, cooking, emoji, lego, line_drawing, origami, painting, pixel_art
from procseq.data.synthetic import draw as D
from procseq.data.synthetic.base import Spec, check_frame_size
from procseq.planning.writer import complete_attributes, num_stages

READ_TOLERANCE = 0.2
"""Largest mean absolute difference (0..1 per channel) between the picture and its re-rendering from a reading
(true corpus frames re-render at ~0; the embedded model's frames at 0.05-0.15)."""
READ_SIZE = 64
"""The side a picture of another size is read at."""
REFINE_TOP = 3
"""How many of the best geometries get their colours corrected value by value."""


def _grid(**axes: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def hypotheses(domain: str) -> list[dict[str, Any]]:
    """The geometries of `domain` a picture may have (the attributes the checker needs to be told)."""
    return {
        "painting": _grid(shape=painting.SHAPES, position=list(painting.X), sun_side=["left", "right"]),
        "line_drawing": _grid(shape=line_drawing.SHAPES, position=list(line_drawing.X), hatch=[1, 2, 3]),
        "lego": _grid(structure=list(lego.STRUCTURES)),
        "pixel_art": [{}],
        "cooking": _grid(count=[2, 3, 4], angle_flip=[0, 1]),
        "emoji": _grid(face=emoji.FACES, mouth=emoji.MOUTHS, accessory=emoji.ACCESSORIES),
        "clay": _grid(form=["ball", "block", "cone", "gem"]),
        "sand_art": _grid(phase=[round(k * 0.785, 3) for k in range(8)]),
        "origami": _grid(model=list(origami.MODELS)),
    }.get(domain, [])


def from_reading(domain: str, read: dict[str, Any], hyp: dict[str, Any]) -> dict[str, Any]:
    """The attribute values a checker reading states (under the geometry `hyp`), as parser keys."""
    if domain == "painting":
        out = {"color": read.get("obj0.color"), "sky": read.get("sky"), "ground": read.get("ground")}
    elif domain == "lego":
        colors = [read.get(f"brick{j}.color") for j in range(16)]
        rows = [r for r, _ in lego.brick_cells(hyp["structure"], max(1, min(read.get("count") or 1, 16)))]
        by_row = {row: c for row, c in zip(rows, colors) if c is not None}
        out = {"baseplate": read.get("baseplate"), "primary": by_row.get(0), "secondary": by_row.get(1),
               "count": read.get("count") or None}
    elif domain == "cooking":
        raw = {r: f for f, (r, _, _) in cooking.FOODS.items()}
        out = {"food": raw.get(read.get("food.color")), "cooked": read.get("cooked"), "plate": read.get("plate"),
               "count": read.get("count") if read.get("food.color") else None}
    elif domain == "emoji":
        out = {"color": read.get("face.color"), "accessory_color": read.get("accessory.color")}
    elif domain == "sand_art":
        layers = [read.get(f"layer{k}.color") for k in range(8)]
        out = {"layers": [c for c in layers if c is not None] or None}
    elif domain == "origami":
        out = {"color": read.get("color")}
    else:  # line_drawing, pixel_art, clay: the checker's keys are the attributes
        out = {k: read.get(k) for k in ("ink", "color", "sprite", "background")}
    out = {**{k: v for k, v in hyp.items() if k != "angle_flip"}, **{k: v for k, v in out.items() if v is not None}}
    if domain == "lego" and "secondary" not in out and "primary" in out:
        out["secondary"] = out["primary"]
    return out


def _spec(domain: str, asked: dict[str, Any], size: int, num_frames: int) -> Spec:
    d = REGISTRY[domain]
    stages = num_stages(d, num_frames, asked)
    attrs, _ = complete_attributes(domain, asked, stages, "picture")
    if domain == "sand_art" and "phase" in asked:
        attrs["phase"] = asked["phase"]
    if domain == "cooking" and "angle_flip" in asked:
        attrs["angle"] = cooking.START_ANGLE[attrs["count"]] + 180.0 * asked["angle_flip"]
    n = stages if d.stretches else num_frames
    return Spec(domain, 0, "train", size, n, "", [], attrs, "")


def read_attributes(domain: str, frame: Any, step: int, num_frames: int) -> dict[str, Any] | None:
    """The attribute values of `domain` a picture of step `step` (of `num_frames`) shows, read by the corpus
    checker (parser keys, as :func:`~procseq.planning.parser.parse_prompt` gives them), or None when no reading
    re-renders the picture within :data:`READ_TOLERANCE`.

    Args:
        frame: the picture: a PIL image or a uint8 array of shape `(S, S, 3)`.
    """
    if domain not in REGISTRY or not hypotheses(domain):
        return None
    arr = _as_array(frame)
    size = arr.shape[0]
    final = step >= num_frames - 1
    def distance(asked: dict[str, Any], hyp: dict[str, Any]) -> float:
        spec = _spec(domain, {**asked, **{k: v for k, v in hyp.items() if k == "angle_flip"}}, size, num_frames)
        redrawn = REGISTRY[domain].render(spec)[spec.num_frames - 1 if final else min(step, spec.num_frames - 1)]
        return float(np.abs(_pooled(redrawn) - _pooled(arr)).mean()) / 255.0

    readings: list[tuple[float, dict[str, Any], dict[str, Any]]] = []
    for hyp in hypotheses(domain):
        try:
            probe = _spec(domain, hyp, size, num_frames)
            if domain == "lego":  # the count of bricks is read first; the structure decides which brick is which
                probe = _spec(domain, {**hyp, "count": max(REGISTRY[domain].read(arr, probe)["count"], 1)}, size,
                              num_frames)
            asked = from_reading(domain, REGISTRY[domain].read(arr, probe), hyp)
            readings.append((distance(asked, hyp), asked, hyp))
        except (KeyError, ValueError, IndexError):
            continue
    readings.sort(key=lambda r: r[0])
    for dist, asked, hyp in readings[:REFINE_TOP]:  # the checker's colours, corrected one value at a time
        for key, values in value_axes(domain).items():
            for value in values:
                if asked.get(key) != value:
                    trial = {**asked, key: value}
                    try:
                        d = distance(trial, hyp)
                    except (KeyError, ValueError, IndexError):
                        continue
                    readings.append((d, trial, hyp))
                    if d < dist:
                        dist, asked = d, trial
    if not readings or min(r[0] for r in readings) > READ_TOLERANCE:
        return None
    best_dist = min(r[0] for r in readings)
    best = next(asked for dist, asked, _ in readings if dist == best_dist)
    tied = [asked for dist, asked, _ in readings if dist <= best_dist + 1e-6]
    # a value the picture does not decide (every choice redraws it the same) is not read
    return {k: v for k, v in best.items()
            if k not in ("sun_side", "phase") and all(t.get(k) == v for t in tied)}


def _pooled(img: np.ndarray) -> np.ndarray:
    """2x2 means: a generated frame's soft edges count less than its colours."""
    h = img.shape[0] // 2
    return img[: 2 * h, : 2 * h].astype(np.float32).reshape(h, 2, h, 2, 3).mean((1, 3))


def value_axes(domain: str) -> dict[str, list[str]]:
    """The colour-like values of `domain` the reader may correct after the checker's reading (each re-rendered)."""
    colors = list(D.COLORS)
    return {
        "painting": {"color": colors, "sky": list(painting.SKIES), "ground": list(painting.GROUNDS)},
        "line_drawing": {"ink": list(line_drawing.INKS)},
        "lego": {"primary": colors, "secondary": colors, "baseplate": list(lego.BASEPLATES)},
        "pixel_art": {"color": colors, "background": list(pixel_art.BACKGROUNDS), "sprite": list(pixel_art.SPRITES)},
        "cooking": {"plate": list(cooking.PLATES)},
        "emoji": {"color": colors, "accessory_color": colors},
        "clay": {"color": colors},
        "origami": {"color": colors},
    }.get(domain, {})


def _as_array(frame: Any) -> np.ndarray:
    """The picture as a square uint8 `(S, S, 3)` array: as it is at a size the corpus renders, else padded and
    resized to :data:`READ_SIZE` (:func:`procseq.images.prepare_image`)."""
    from PIL import Image

    from procseq.images import prepare_image

    img = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
    img = img.convert("RGB")
    try:
        check_frame_size(img.size[0])
        native = img.size[0] == img.size[1]
    except ValueError:
        native = False
    return np.asarray(img if native else prepare_image(img, READ_SIZE), dtype=np.uint8)


def picture_planner(frame: Any, domain: str, step: int, num_frames: int, fallback: Callable[..., Any],
                    asked: dict[str, Any] | None = None) -> Callable[[str, str, int], Plan]:
    """A planner whose captions describe the picture (step `step` of `num_frames`): the checker's reading, with
    the values of `asked` (a prompt's) kept over it; where the picture cannot be read, `fallback`'s plan with a
    one-line ``meta["note"]`` saying so."""
    from procseq.planning.planner import attribute_plan, make_plan

    read = read_attributes(domain, frame, step, num_frames)

    def plan(title: str, domain_: str, steps: int) -> Plan:
        if read is None:
            out = make_plan(fallback, title, domain_, steps)
            out.meta["note"] = (f"procseq: the picture cannot be read as a {domain_.replace('_', ' ')} picture of the "
                                "corpus; the captions are the domain's generic plan")
            return out
        out = attribute_plan(title, domain_, steps, {**read, **(asked or {})}, source="picture",
                             seed_text=f"picture {sorted(read.items())}")
        out.meta["read_from_picture"] = read
        return out

    return plan


__all__ = ["READ_TOLERANCE", "from_reading", "hypotheses", "picture_planner", "read_attributes", "value_axes"]
