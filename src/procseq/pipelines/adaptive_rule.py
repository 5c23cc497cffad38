"""The calibrated decision rule of adaptive steps: thresholds from the training split's ground truth.

ProcessMaker's rule takes ``mu`` and ``sigma`` from the sequence being edited, so every sequence has
pairs above ``mu + k sigma``: a clean sequence gets edits, and the pair flagged is the naturally largest
step, not the missing one. Here the statistics are those of **true adjacent steps of the training
split** (per domain), written once by :func:`procseq.eval.adaptive_calibration.calibrate` into a JSON
file beside the model, so a sequence is compared with how true processes move:

- every pair gets four raw terms (:func:`pair_terms`): **global** ``1 - cos`` of the two frames' image
  embeddings, **local** the mean over patch positions of ``1 - cos`` of the two frames' patch features at
  that position (``local="patch"``, our reading of the paper's local term: a change confined to one
  region moves only its patches) or the nearest-patch distance (``"nearest"``), **semantic** ``1 - cos``
  of the two captions' text embeddings, and **order**: whether the caption pair reads like two adjacent
  steps of a training plan or like a step skipped (distance to the nearest training pair of adjacent
  captions minus distance to the nearest pair one step apart; > 0 reads as a skip), and **pixel** (not the
  paper's): the mean absolute pixel difference (0..1), finer than a 32-pixel frame's 4x4 latent patches;
  ``*_rel`` variants divide a visual term by its median over the sequence's pairs;
- **insertion**: ``D_add = sum_t w_t (x_t - mu_t) / sigma_t`` (``mu_t``, ``sigma_t`` over the training
  split's adjacent pairs) above ``tau_add``; weights and ``tau_add`` per domain were chosen on the
  training split so that few clean training sequences get an insertion and most dropped steps do;
- **deletion**: ``D_del = alpha g/mu_g + beta l/mu_l + (1 - alpha - beta) s/mu_s`` below ``tau_del``, a
  fraction of the smallest true training step (a true step always changes something).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

TERMS4 = ("global", "local", "semantic", "order", "pixel")
RELATIVE = {"global_rel": "global", "local_rel": "local", "pixel_rel": "pixel"}
"""Relative visual terms: the term divided by its median over the sequence's pairs (a sequence whose every step
is large, e.g. a big sprite, is not a sequence of gaps)."""
ALL_TERMS = TERMS4 + tuple(RELATIVE)
LOCAL_FORMS = ("patch", "nearest")
CALIBRATION_FILE = "adaptive_calibration.json"
"""The file name beside a model (in its folder) that the pipeline and ``procseq adapt`` read."""

EPS = 1e-6
"""Differences below this are zero (float noise between identical frames)."""


def nearest_patch_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over the patches of `a` `(P, C)` of the cosine distance to their nearest patch of `b`, symmetrised."""
    an = torch.nn.functional.normalize(a.double(), dim=-1, eps=1e-12)
    bn = torch.nn.functional.normalize(b.double(), dim=-1, eps=1e-12)
    d = (1.0 - an @ bn.T).clamp_min(0)
    value = float(0.5 * (d.min(dim=1).values.mean() + d.min(dim=0).values.mean()))
    return value if value >= EPS else 0.0


def strip_number(caption: str) -> str:
    """`caption` without a leading step number (``"3. add shading"`` -> ``"add shading"``)."""
    return re.sub(r"^\s*(?:step\s*)?\d+\s*[:.)-]\s*", "", caption, flags=re.IGNORECASE)



def _cos_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)).clamp_min(0)


def patch_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over patch positions of the cosine distance between `a` and `b` `(P, C)` at the same position."""
    return float(_cos_dist(a, b).mean())


@dataclass
class DomainCalibration:
    """One domain's statistics and thresholds (see the module docstring).

    Args:
        mean, std: per term, over the training split's adjacent pairs.
        add_weights: weights of the standardised terms in ``D_add``; tau_add: its threshold.
        del_weights: weights of the mean-scaled terms in ``D_del``; tau_del: its threshold.
        train: what the rule scored on the training cases it was chosen on (rates).
        insertion: the insertion that filled the training split's dropped steps best (``average``, ``model``: from
            both neighbours, or ``sequence``: from the whole sequence), what ``--interpolator auto`` uses here.
    """

    mean: dict[str, float]
    std: dict[str, float]
    add_weights: dict[str, float]
    tau_add: float
    del_weights: dict[str, float]
    tau_del: float
    train: dict[str, float] = field(default_factory=dict)
    insertion: str = "average"

    def d_add(self, x: dict[str, float]) -> float:
        """``D_add`` of one pair's terms (relative terms included, see :func:`with_relative`)."""
        return float(sum(w * (x[t] - self.mean[t]) / max(self.std[t], 1e-12) for t, w in self.add_weights.items()))

    def d_del(self, x: dict[str, float]) -> float:
        """``D_del`` of one pair's raw terms."""
        return float(sum(w * x[t] / max(self.mean[t], 1e-12) for t, w in self.del_weights.items()))


@dataclass
class Calibration:
    """Per-domain calibration plus the training plans' caption pairs the order term compares with.

    Args:
        domains: domain -> :class:`DomainCalibration`.
        pairs: domain -> ``{"adjacent": [[a, b], ...], "skip": [[a, c, b], ...]}`` (a skip pair's middle
            caption last); strings, embedded with whichever text encoder reads them.
        extractor: the feature extractor the statistics were measured with (``"model"``: the model's own).
        local: the local term's form; source: where it came from (split, records per domain, command).
    """

    domains: dict[str, DomainCalibration]
    pairs: dict[str, dict[str, list[list[str]]]]
    extractor: str = "model"
    local: str = "patch"
    source: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read :meth:`save`'s JSON (``ValueError`` naming the file when it is not one)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; write one with python -m procseq.eval.adaptive_calibration.")
        try:
            d = json.loads(path.read_text())
            return cls({k: DomainCalibration(**v) for k, v in d["domains"].items()}, d["pairs"],
                       d.get("extractor", "model"), d.get("local", "patch"), d.get("source", {}))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not an adaptive-steps calibration ({type(err).__name__}: {err}); "
                             "rewrite it with python -m procseq.eval.adaptive_calibration.") from err


def find_calibration(model_folder: str | Path | None) -> Path | None:
    """The calibration file in a model folder, if it has one."""
    if model_folder is None:
        return None
    path = Path(model_folder) / CALIBRATION_FILE
    return path if path.is_file() else None


def order_margin(x: torch.Tensor, adjacent: torch.Tensor, skip: torch.Tensor) -> np.ndarray:
    """``(d_adj - d_skip) / (d_adj + d_skip)`` per row of `x`: distances to the nearest adjacent and skip pair
    (scale-free, in [-1, 1]: captions with unseen attributes are far from both, not near a threshold)."""
    da, ds = torch.cdist(x, adjacent).min(dim=1).values, torch.cdist(x, skip).min(dim=1).values
    return ((da - ds) / (da + ds).clamp_min(1e-9)).numpy()


class OrderIndex:
    """The training caption pairs of each domain, embedded once by `text_features` (a callable)."""

    def __init__(self, pairs: dict[str, dict[str, list[list[str]]]], text_features: Any):
        self.pairs, self.text_features = pairs, text_features
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _embed(self, texts: SequenceABC[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(self.text_features(list(texts)).double(), dim=-1)

    def index(self, domain: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(adjacent (Na, 2D), skip (Ns, 2D))` pair embeddings of `domain`, or None when it has none."""
        if domain not in self.pairs:
            return None
        if domain not in self._cache:
            adj, skip = self.pairs[domain]["adjacent"], self.pairs[domain]["skip"]
            texts = sorted({t for p in adj for t in p} | {t for p in skip for t in p[:2]})
            e = dict(zip(texts, self._embed(texts)))
            self._cache[domain] = (torch.stack([torch.cat([e[a], e[b]]) for a, b in adj]),
                                   torch.stack([torch.cat([e[p[0]], e[p[1]]]) for p in skip]))
        return self._cache[domain]

    def order(self, domain: str, text: torch.Tensor) -> np.ndarray:
        """The order term of each adjacent pair of captions whose embeddings are `text` `(N, D)`."""
        idx = self.index(domain)
        if idx is None:
            return np.zeros(len(text) - 1)
        t = torch.nn.functional.normalize(text.double(), dim=-1)
        x = torch.cat([t[:-1], t[1:]], dim=1)
        return order_margin(x, *idx)

    def middle(self, domain: str, left: torch.Tensor, right: torch.Tensor) -> str | None:
        """The middle caption of the training skip pair nearest to captions (left, right)."""
        idx = self.index(domain)
        if idx is None:
            return None
        x = torch.cat([torch.nn.functional.normalize(left.double(), dim=-1),
                       torch.nn.functional.normalize(right.double(), dim=-1)])
        return self.pairs[domain]["skip"][int(torch.cdist(x[None], idx[1]).argmin())][2]


def with_relative(pairs: list[dict[str, float]]) -> list[dict[str, float]]:
    """`pairs` (one sequence's, in order) with the relative visual terms added (term / its median over `pairs`;
    pairs with no change, a repeated frame, are left out of the median)."""
    med = {r: float(np.median([p[t] for p in pairs if p[t] > 1e-6] or [0.0])) for r, t in RELATIVE.items()}
    return [{**p, **{r: p[t] / med[r] if med[r] > 1e-12 else 0.0 for r, t in RELATIVE.items()}} for p in pairs]


def pixels(frames: SequenceABC[Any]) -> torch.Tensor:
    """Frames as one `(N, H, W, 3)` float tensor in [0, 1] (all at the first frame's size)."""
    size = frames[0].size
    return torch.stack([torch.from_numpy(np.asarray(f.convert("RGB").resize(size), dtype=np.float32)) / 255.0
                        for f in frames])


def pair_terms(image: Any, text: torch.Tensor, order: np.ndarray | None, local: str = "patch",
               pairs: SequenceABC[tuple[int, int]] | None = None, pix: torch.Tensor | None = None
               ) -> list[dict[str, float]]:
    """The raw terms of frame pairs (default: every adjacent pair) from image features, text embeddings and
    pixels (`pix`, :func:`pixels`; the pixel term is 0 without them)."""
    if local not in LOCAL_FORMS:
        raise ValueError(f"local must be one of {', '.join(LOCAL_FORMS)}, got {local!r}.")

    n = len(image.embeds)
    pairs = list(pairs) if pairs is not None else [(i, i + 1) for i in range(n - 1)]
    out = []
    for k, (i, j) in enumerate(pairs):
        lo = patch_distance(image.patches[i], image.patches[j]) if local == "patch" else \
            nearest_patch_distance(image.patches[i], image.patches[j])
        out.append({"global": float(_cos_dist(image.embeds[i], image.embeds[j])), "local": lo,
                    "semantic": float(_cos_dist(text[i], text[j])),
                    "order": float(order[k]) if order is not None else 0.0,
                    "pixel": float((pix[i] - pix[j]).abs().mean()) if pix is not None else 0.0})
    return out


_INDEXES: dict[tuple[int, int], OrderIndex] = {}


def order_index(calibration: Calibration, extractor: Any) -> OrderIndex:
    """The (cached) :class:`OrderIndex` of `calibration` read through `extractor`'s text features."""
    key = (id(calibration), id(extractor))
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = OrderIndex(calibration.pairs, extractor.text_features)
    return _INDEXES[key]


def calibrated_pairs(frames: SequenceABC[Any], captions: SequenceABC[str], extractor: Any, calibration: Calibration,
                     domain: str) -> list[dict[str, Any]]:
    """Every adjacent pair's raw terms, ``D_add`` and ``D_del`` under `domain`'s calibration."""
    cal = calibration.domains[domain]
    text = extractor.text_features(list(captions))
    order = order_index(calibration, extractor).order(domain, text)
    out = []
    terms = pair_terms(extractor.image_features(list(frames)), text, order, calibration.local, pix=pixels(frames))
    for x in with_relative(terms):
        out.append({**x, "d_add": cal.d_add(x), "d_del": cal.d_del(x)})
    return out


def calibrated_candidates(frames: SequenceABC[Any], captions: SequenceABC[str], origin: SequenceABC[int | None],
                          extractor: Any, calibration: Calibration, domain: str, insert: bool = True,
                          delete: bool = True) -> tuple[list[tuple[str, int, float]], dict[str, Any],
                                                        dict[int, dict[str, Any]]]:
    """Pairs to edit under `domain`'s calibration: ``(op, pair, score)`` each, the round's info (thresholds, every
    pair's terms) and per acted-on pair its values, thresholds and reason. A repeat is checked first (frames and
    captions alike is no gap); a pair next to a frame inserted earlier (`origin` None) is left alone."""
    cal = calibration.domains[domain]
    pairs = calibrated_pairs(frames, captions, extractor, calibration, domain)
    found, why = [], {}
    for i, p in enumerate(pairs):
        if origin[i] is None or origin[i + 1] is None:
            continue
        if delete and p["d_del"] < cal.tau_del:
            found.append(("delete", i, (cal.tau_del - p["d_del"]) / max(cal.tau_del, 1e-12)))
            reason = f"D_del {p['d_del']:.3f} < tau_del {cal.tau_del:.3f}"
        elif insert and p["d_add"] > cal.tau_add:
            found.append(("insert", i, p["d_add"] - cal.tau_add))
            reason = f"D_add {p['d_add']:.3f} > tau_add {cal.tau_add:.3f}"
        else:
            continue
        why[i] = {**p, "rule": "calibrated", "tau_add": cal.tau_add, "tau_del": cal.tau_del,
                  "add_weights": cal.add_weights, "del_weights": cal.del_weights, "reason": reason}
    return found, {"thresholds": {"tau_add": cal.tau_add, "tau_del": cal.tau_del}, "pairs": pairs}, why


def plan_caption(plan: SequenceABC[str] | None, left: str, right: str) -> str | None:
    """The plan's step between the neighbours' steps `left` and `right` (one exactly; None when there is none)."""
    if not plan:
        return None

    keys = [strip_number(c).strip().lower() for c in plan]
    a, b = strip_number(left).strip().lower(), strip_number(right).strip().lower()
    if a not in keys or b not in keys:
        return None
    i, j = keys.index(a), len(keys) - 1 - keys[::-1].index(b)
    return plan[i + 1] if j - i >= 2 else None


def edit_lines(record: dict[str, Any]) -> list[str]:
    """One line per edit of an adaptive-steps record: what, where (1-based frames of that round's input), why."""
    lines = []
    for rd in record.get("rounds", []):
        for a in rd["actions"]:
            where = (f"inserted a frame between frames {a['between'][0] + 1} and {a['between'][1] + 1}"
                     if a["op"] == "insert" else f"deleted frame {a['index'] + 1} (pair {a['pair'][0] + 1}-"
                     f"{a['pair'][1] + 1} alike)")
            terms = ", ".join(f"{t} {a[t]:.3f}" for t in ALL_TERMS if t in a)
            lines.append(f"round {rd['round'] + 1}: {where}: {a.get('reason', '')} [{terms}; {a.get('rule')} rule] "
                         f"-> {a.get('caption', '')!r}")
    return lines


__all__ = ["ALL_TERMS", "CALIBRATION_FILE", "RELATIVE", "with_relative", "Calibration", "DomainCalibration", "LOCAL_FORMS", "OrderIndex", "TERMS4",
           "calibrated_candidates", "calibrated_pairs", "edit_lines", "find_calibration", "order_index", "order_margin", "pair_terms", "pixels", "plan_caption", "patch_distance"]
