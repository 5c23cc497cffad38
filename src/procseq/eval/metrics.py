"""Ground-truth metrics: one generated sequence against the spec that defines its correct process.

Every synthetic sequence knows its truth (DESIGN.md, "Ground truth before opinion"): the domain
renders the correct frames, reads attributes back from pixels and says which attributes must stay
fixed. The four metrics of :class:`SequenceScore`:

- **attribute accuracy**: ``domain.read(final generated frame)`` vs ``domain.expected(spec, last)``,
  the fraction of keys that match (a key expected invisible must also read ``None``).
- **step accuracy**: the fraction of generated frames ``i`` that are strictly closer to ground-truth
  frame ``i`` than to every other ground-truth frame ``j`` whose picture differs from frame ``i``.
  Distance: :func:`step_distance`, the mean absolute error in [0, 1] intensity after a Gaussian blur
  (radius 1 px) and a 2x box downsampling, so one-pixel misplacements cost little.
- **fidelity**: per frame against ground-truth frame ``i``, PSNR in dB (peak 1.0, capped at
  :data:`PSNR_CAP`) and a [0, 1] similarity, the mean SSIM over RGB channels (7x7 uniform window,
  K1=0.01, K2=0.03, clipped at 0), both averaged over frames.
- **cross-step consistency**: over adjacent frame pairs ``(i, i+1)`` and keys of
  ``domain.invariant_keys(spec)`` expected visible in both, the fraction where both generated frames
  read the same, visible (not ``None``) value. ``None`` when no such pair exists.

Generated frames of another size are resized (bicubic) to ``spec.frame_size`` first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from procseq.data.synthetic.base import attribute_accuracy, values_equal

PSNR_CAP = 100.0
"""PSNR (dB) reported for identical frames, so that reports stay finite and JSON-safe."""

METRICS = ("attribute_acc", "step_acc", "psnr", "similarity", "consistency")
"""The aggregated metric names, in report column order."""

Frame = np.ndarray | Image.Image


@dataclass
class FrameScore:
    """Per-frame results: fidelity against ground-truth frame ``i`` and whether step ``i`` was recognised."""

    psnr: float
    similarity: float
    step_correct: bool
    step_distance: float


@dataclass
class SequenceScore:
    """All ground-truth metrics of one generated sequence (see the module docstring for definitions).

    `consistency` is ``None`` when the spec has no invariant key visible in two adjacent steps;
    `attribute_acc` is ``None`` when the domain expects no key at the last step.
    `attributes` maps each final-step key to whether it was read back correctly.
    """

    domain: str
    num_frames: int
    attribute_acc: float | None
    step_acc: float
    psnr: float
    similarity: float
    consistency: float | None
    attributes: dict[str, bool] = field(default_factory=dict)
    frames: list[FrameScore] = field(default_factory=list)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SequenceScore":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["frames"] = [FrameScore(**f) for f in d.get("frames", [])]
        return cls(**d)


def to_array(frame: Frame, size: int) -> np.ndarray:
    """A frame as a uint8 array of shape `(size, size, 3)`, resized (bicubic) if needed.

    Float arrays with values in [0, 1] are scaled by 255; other arrays are rounded and clipped.
    """
    if isinstance(frame, np.ndarray):
        arr = frame
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"A frame must be an (H, W, 3) RGB array, got shape {arr.shape}.")
        image = Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))
    elif isinstance(frame, Image.Image):
        image = frame.convert("RGB")
    else:
        raise ValueError(f"A frame must be a numpy array or a PIL image, got {type(frame).__name__}.")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def _step_features(frame: np.ndarray) -> np.ndarray:
    """Blur (Gaussian, radius 1 px) then 2x box-downsample; float32 in [0, 1]."""
    image = Image.fromarray(frame).filter(ImageFilter.GaussianBlur(1))
    w, h = image.size
    image = image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255.0


def step_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error in [0, 1] between blurred, 2x-downsampled uint8 frames of equal shape."""
    return float(np.abs(_step_features(a) - _step_features(b)).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between uint8 frames (peak 1.0 after scaling to [0, 1]), capped at :data:`PSNR_CAP`."""
    mse = float(np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(1.0 / mse))


def _box_mean(x: np.ndarray, win: int) -> np.ndarray:
    """Mean over every `win` x `win` window ('valid' positions) of a 2D array, via an integral image."""
    c = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    s = c[win:, win:] - c[:-win, win:] - c[win:, :-win] + c[:-win, :-win]
    return s / float(win * win)


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> float:
    """Mean SSIM over RGB channels of uint8 frames (uniform window, sample covariance), clipped to [0, 1]."""
    win = max(1, min(win, a.shape[0], a.shape[1]))
    if win % 2 == 0:
        win -= 1
    c1, c2 = 0.01**2, 0.03**2
    n = win * win
    cov_norm = n / (n - 1) if n > 1 else 1.0
    values = []
    for ch in range(a.shape[2]):
        x = a[:, :, ch].astype(np.float64) / 255.0
        y = b[:, :, ch].astype(np.float64) / 255.0
        mx, my = _box_mean(x, win), _box_mean(y, win)
        vx = cov_norm * (_box_mean(x * x, win) - mx * mx)
        vy = cov_norm * (_box_mean(y * y, win) - my * my)
        vxy = cov_norm * (_box_mean(x * y, win) - mx * my)
        s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        values.append(float(s.mean()))
    return float(min(1.0, max(0.0, np.mean(values))))


def domain_of(spec: Any, domain: Any | None = None) -> Any:
    """`domain` if given, else the registered synthetic ``Domain`` named by ``spec.domain``."""
    if domain is not None:
        return domain
    # Imported here so that procseq.eval loads without pulling in every synthetic domain.
    from procseq.data.synthetic import get_domain

    return get_domain(spec.domain)


def score_sequence(
    frames: SequenceABC[Frame], spec: Any, domain: Any | None = None, name: str = ""
) -> SequenceScore:
    """Score generated `frames` against `spec` (a synthetic ``Spec``) with its domain's checker.

    Args:
        frames: `spec.num_frames` generated frames (uint8 `(H, W, 3)` arrays or PIL images), first
            step first; any size (resized to `spec.frame_size`).
        spec: the ground-truth spec of the sequence.
        domain: the ``Domain`` object; defaults to ``get_domain(spec.domain)``.
        name: an identifier stored in the score (e.g. the sequence folder name).
    """
    dom = domain_of(spec, domain)
    n = int(spec.num_frames)
    if len(frames) != n:
        raise ValueError(
            f"The spec of this {spec.domain!r} sequence has {n} steps but {len(frames)} frames were "
            f"given; generate exactly num_frames={n} frames (resample adaptive-step outputs to the "
            "spec's step count before ground-truth scoring)."
        )
    size = int(spec.frame_size)
    gen = [to_array(f, size) for f in frames]
    truth = [to_array(f, size) for f in dom.render(spec)]
    if len(truth) != n:
        raise ValueError(f"Domain {spec.domain!r} rendered {len(truth)} frames for a {n}-step spec.")

    # Step accuracy: nearest ground-truth step, ignoring ground-truth steps that look identical to i.
    gen_feat = [_step_features(g) for g in gen]
    truth_feat = [_step_features(t) for t in truth]
    frame_scores = []
    for i in range(n):
        d = [float(np.abs(gen_feat[i] - tf).mean()) for tf in truth_feat]
        rivals = [d[j] for j in range(n) if j != i and not np.array_equal(truth[j], truth[i])]
        correct = all(d[i] < r for r in rivals)
        frame_scores.append(FrameScore(psnr(gen[i], truth[i]), ssim(gen[i], truth[i]), correct, d[i]))

    # Attribute accuracy on the final frame.
    expected = dom.expected(spec, n - 1)
    read_final = dom.read(gen[-1], spec)
    attributes = {k: values_equal(read_final.get(k), v) for k, v in expected.items()}
    attribute_acc = attribute_accuracy(read_final, expected) if attributes else None

    # Cross-step consistency of invariant keys between adjacent generated frames.
    invariant = list(dom.invariant_keys(spec))
    consistency = None
    if invariant and n > 1:
        reads = [dom.read(g, spec) for g in gen[:-1]] + [read_final]
        exp = [dom.expected(spec, i) for i in range(n)]
        hits = []
        for i in range(n - 1):
            for k in invariant:
                if exp[i].get(k) is None or exp[i + 1].get(k) is None:
                    continue
                a, b = reads[i].get(k), reads[i + 1].get(k)
                hits.append(a is not None and b is not None and values_equal(a, b))
        consistency = float(np.mean(hits)) if hits else None

    return SequenceScore(
        domain=str(spec.domain),
        num_frames=n,
        attribute_acc=attribute_acc,
        step_acc=float(np.mean([f.step_correct for f in frame_scores])),
        psnr=float(np.mean([f.psnr for f in frame_scores])),
        similarity=float(np.mean([f.similarity for f in frame_scores])),
        consistency=consistency,
        attributes=attributes,
        frames=frame_scores,
        name=name,
    )


def attribute_breakdown(scores: SequenceABC[SequenceScore]) -> dict[str, float]:
    """Per-attribute accuracy on the final frame: for each key, the share of the sequences expecting it that read
    it back correctly (``{"accessory_color": 0.38, "color": 0.9, ...}``, keys sorted)."""
    hits: dict[str, list[bool]] = {}
    for s in scores:
        for key, ok in s.attributes.items():
            hits.setdefault(key, []).append(bool(ok))
    return {k: float(np.mean(hits[k])) for k in sorted(hits)}


def _summarise(scores: list[SequenceScore]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(scores)}
    for metric in METRICS:
        values = [getattr(s, metric) for s in scores]
        values = [v for v in values if v is not None and not math.isnan(v)]
        out[metric] = float(np.mean(values)) if values else None
        out[f"n_{metric}"] = len(values)
    out.update({f"{ATTRIBUTE_PREFIX}{k}": v for k, v in attribute_breakdown(scores).items()})
    return out


ATTRIBUTE_PREFIX = "attribute_acc."
"""A summary's per-attribute accuracies are flat keys ``attribute_acc.<key>`` (numbers only, so a summary stays a
flat mapping that ``pytest.approx`` and JSON readers take as they are)."""


def per_attribute(summary: dict[str, Any]) -> dict[str, float]:
    """The per-attribute accuracies of one :func:`aggregate` summary (a domain's or ``overall``): ``{key: acc}``."""
    return {k[len(ATTRIBUTE_PREFIX):]: v for k, v in summary.items() if k.startswith(ATTRIBUTE_PREFIX)}


def aggregate(scores: SequenceABC[SequenceScore]) -> dict[str, Any]:
    """Mean of every metric per domain and overall (a plain mean over sequences, not over domains).

    Returns ``{"domains": {name: summary}, "overall": summary}`` where a summary is
    ``{"n": sequences, metric: mean or None, "n_<metric>": sequences that had the metric,
    "attribute_acc.<key>": accuracy of each attribute key}`` (:func:`attribute_breakdown`, :func:`per_attribute`);
    ``consistency`` counts only sequences where it was defined.
    """
    by_domain: dict[str, list[SequenceScore]] = {}
    for s in scores:
        by_domain.setdefault(s.domain, []).append(s)
    return {
        "domains": {d: _summarise(by_domain[d]) for d in sorted(by_domain)},
        "overall": _summarise(list(scores)),
    }


def attribute_agreement(frames: list[Any], spec: Any) -> tuple[int, int]:
    """(hits, checks) of the attributes of frames ``0..n-2`` that must already show their final value, against
    the values read from the last frame (the known frame of ReCraft: the input picture)."""
    dom = domain_of(spec)
    size = int(spec.frame_size)
    arrays = [to_array(f, size) for f in frames]
    n = len(arrays)
    final_expected = dom.expected(spec, n - 1)
    target = dom.read(arrays[-1], spec)
    hits = checks = 0
    for i in range(n - 1):
        expected = dom.expected(spec, i)
        keys = [k for k, v in expected.items() if v is not None and values_equal(v, final_expected.get(k))]
        if not keys:
            continue
        read = dom.read(arrays[i], spec)
        for k in keys:
            checks += 1
            hits += int(read.get(k) is not None and values_equal(read.get(k), target.get(k)))
    return hits, checks


__all__ = [
    "attribute_agreement",
    "METRICS",
    "PSNR_CAP",
    "FrameScore",
    "SequenceScore",
    "aggregate",
    "ATTRIBUTE_PREFIX",
    "attribute_breakdown",
    "per_attribute",
    "domain_of",
    "psnr",
    "score_sequence",
    "ssim",
    "step_distance",
    "to_array",
    "values_equal",
]

