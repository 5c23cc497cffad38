"""Adaptive steps (ProcessMaker stage 2): insert a frame where a step is missing, delete one that repeats.

A window slides over adjacent frame pairs ``(i, i+1)`` and reads differences from a pluggable
:class:`~procseq.models.features.FeatureExtractor`: **global** (cosine distance of the two frames' image
embeddings), **local** (per patch position, ``local="patch"``, or nearest-patch, ``"nearest"``) and
**semantic** (cosine distance of the two step captions' text embeddings). Two rules decide:

- ``rule: calibrated`` (when ``config.calibration`` knows the sequence's domain): thresholds measured on the
  training split's ground truth, see :mod:`procseq.pipelines.adaptive_rule`;
- ``rule: sequence`` (ProcessMaker's own statistics): each term divided by its mean over the sequence's
  pairs, ``D = alpha g + beta l + (1 - alpha - beta) s``, ``tau_add = mu + k_add sigma``,
  ``tau_del = mu - k_del sigma`` over the sequence's ``D``.

A pair above ``tau_add`` gets a frame inserted between its frames (an :data:`Interpolator`: the model from
both neighbours through known frames, DESIGN.md #10, or their average), captioned with the plan's step
between the neighbours' steps when the plan has one; a pair below ``tau_del`` loses its later frame (its
earlier one when the later is the finished artifact) and the kept frame's caption holds both steps in step
order. Rounds repeat until a fixed point, a repeated state, or the budget (``record["stopped"]``); the frame
count stays in ``[min_frames, max_frames]``; ``Step N:`` numbering is renumbered. Every edit is recorded
with its values, thresholds, rule and a one-line reason; a round's ``pairs`` and an action's ``between`` /
``pair`` / ``index`` count frames of that round's input; ``origin`` maps every output frame to its input.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from procseq.models.features import FeatureExtractor
from procseq.conditioning.plan import Plan
from procseq.pipelines.adaptive_rule import (EPS, LOCAL_FORMS, Calibration, calibrated_candidates,
                                             nearest_patch_distance, patch_distance, plan_caption, strip_number)
from procseq.pipelines.insertion import Interpolator, PipelineInterpolator, average_interpolator, fill
from procseq.pipelines.output import SequenceOutput
from procseq.sequence import Sequence


TERMS = ("global", "local", "semantic")


@dataclass
class AdaptiveConfig:
    """Settings of adaptive steps.

    Args:
        alpha, beta: weights of the global and local terms; the semantic term gets ``1 - alpha - beta``.
        k_add, k_del: ``tau_add = mu + k_add * sigma``, ``tau_del = mu - k_del * sigma``.
        max_rounds: the budget of sliding-window rounds (each round acts on every pair at once).
        min_frames, max_frames: the frame count stays in this range (`max_frames` None: twice the input's).
        insert, delete: allow insertions / deletions.
        recompute: recompute the term scales and the thresholds at every round (False: the input sequence's
            hold for every round, so a fixed point is reached once no pair crosses them).
        local: the local term's form: ``"patch"`` (position-aligned patch distance) or ``"nearest"`` (nearest patch).
        calibration: thresholds from the training split (:mod:`procseq.pipelines.adaptive_rule`): a sequence of a
            domain it knows is judged by them (``rule: calibrated``), any other by its own ``mu`` and ``sigma``.
    """

    alpha: float = 0.4
    beta: float = 0.4
    k_add: float = 2.0
    k_del: float = 1.5
    max_rounds: int = 3
    min_frames: int = 2
    max_frames: int | None = None
    insert: bool = True
    delete: bool = True
    recompute: bool = False
    local: str = "patch"
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}.")
        if self.alpha + self.beta > 1.0 + 1e-9:
            raise ValueError(f"alpha + beta must be at most 1 (the semantic weight is 1 - alpha - beta), "
                             f"got {self.alpha} + {self.beta}.")
        if self.k_add < 0 or self.k_del < 0:
            raise ValueError(f"k_add and k_del must be >= 0, got {self.k_add} and {self.k_del}.")
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            raise ValueError(f"max_rounds (the round budget) must be a whole number >= 1, got {self.max_rounds!r}.")
        if self.local not in LOCAL_FORMS:
            raise ValueError(f"local must be one of {', '.join(LOCAL_FORMS)}, got {self.local!r}.")
        if self.min_frames < 2:
            raise ValueError(f"min_frames must be at least 2 (a process has a start and an end), got {self.min_frames}.")
        if self.max_frames is not None and self.max_frames < max(2, self.min_frames):
            raise ValueError(f"max_frames (the frame budget) must be at least 2 and at least min_frames="
                             f"{self.min_frames}, got {self.max_frames}.")

    @property
    def weights(self) -> tuple[float, float, float]:
        """(global, local, semantic) weights."""
        return self.alpha, self.beta, max(0.0, 1.0 - self.alpha - self.beta)


@dataclass
class PairDifferences:
    """The three differences of every adjacent pair, raw, `(n - 1,)` each, the combined ``D`` and the terms' scales."""

    global_: np.ndarray
    local: np.ndarray
    semantic: np.ndarray
    combined: np.ndarray
    scales: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def pair(self, i: int) -> dict[str, float]:
        """Pair `i`'s values as a JSON-ready dict."""
        return {"global": float(self.global_[i]), "local": float(self.local[i]),
                "semantic": float(self.semantic[i]), "combined": float(self.combined[i])}


@dataclass
class Thresholds:
    """``mu``, ``sigma`` of ``D`` over the pairs, and ``tau_add = mu + k_add sigma``, ``tau_del = mu - k_del sigma``."""

    mu: float
    sigma: float
    tau_add: float
    tau_del: float


"""Distances below this are rounding noise and count as 0 (a term that is 0 everywhere drops out)."""
SIGMA_REL = 1e-3
"""A sequence whose ``sigma`` is below this fraction of ``mu`` has all pairs alike: no action."""


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = 1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)
    return torch.where(d < EPS, torch.zeros_like(d), d)


def pair_differences(frames: SequenceABC[Image.Image], captions: SequenceABC[str], extractor: FeatureExtractor,
                     weights: tuple[float, float, float], scales: tuple[float, float, float] | None = None,
                     local: str = "patch") -> PairDifferences:
    """Global, local and semantic differences of adjacent pairs and their weighted combination ``D``.

    Each term is divided by its scale before weighting: `scales` when given (the input sequence's, so
    that later rounds are measured in the same units), else its own mean over the pairs. A term whose
    scale is zero (zero everywhere) drops out.
    """
    if len(frames) < 2:
        raise ValueError(f"Adaptive steps need at least 2 frames, got {len(frames)}.")
    image = extractor.image_features(frames)
    text = extractor.text_features(captions)
    g = _cosine_distance(image.embeds[:-1], image.embeds[1:]).numpy()
    dist = nearest_patch_distance if local == "nearest" else patch_distance
    loc = np.array([dist(image.patches[i], image.patches[i + 1]) for i in range(len(frames) - 1)])
    loc[loc < EPS] = 0.0
    s = _cosine_distance(text[:-1], text[1:]).numpy()
    scales = scales or (float(g.mean()), float(loc.mean()), float(s.mean()))
    combined = np.zeros(len(g))
    for w, term, scale in zip(weights, (g, loc, s), scales):
        if w > 0 and scale >= EPS:
            combined += w * term / scale
    return PairDifferences(g, loc, s, combined, scales)


def thresholds(combined: np.ndarray, k_add: float, k_del: float) -> Thresholds:
    """``tau_add = mu + k_add * sigma`` and ``tau_del = mu - k_del * sigma`` from the sequence's own ``D``."""
    mu, sigma = float(np.mean(combined)), float(np.std(combined))
    return Thresholds(mu, sigma, mu + k_add * sigma, mu - k_del * sigma)


def renumber(captions: list[str]) -> list[str]:
    """Captions with a leading ``Step N:`` / ``N.`` numbering renumbered 1..n (others unchanged)."""
    pattern = re.compile(r"^(\s*(?:step\s*)?)(\d+)(\s*[:.)-])", re.IGNORECASE)
    return [pattern.sub(lambda m, k=k: f"{m.group(1)}{k}{m.group(3)}", c, count=1) for k, c in enumerate(captions, 1)]


def inserted_caption(right: str) -> str:
    """The caption of a step inserted before `right`: the first part of that step (numbering: see :func:`renumber`)."""
    return f"{right} (first part)"


def merged_caption(first: str, second: str) -> str:
    """The caption of the frame kept when one of two adjacent steps is deleted: both actions once each, in step
    order (`first` is the earlier step's caption, whichever frame is kept; its numbering is kept)."""
    a, b = strip_number(first), strip_number(second)
    if a == b or b in a:
        return first
    if a in b:
        return first.replace(a, b) if a else second
    return f"{first}; {b}"


@dataclass
class _Action:
    op: str
    pair: int
    score: float


def candidates(diff: PairDifferences, th: Thresholds, config: AdaptiveConfig) -> list[_Action]:
    """Every pair above ``tau_add`` (insert) or below ``tau_del`` (delete), scored by its distance in sigmas."""
    if th.sigma <= SIGMA_REL * max(abs(th.mu), EPS):
        return []  # all pairs alike (up to feature rounding): nothing stands out
    out = []
    for i, d in enumerate(diff.combined):
        if config.insert and d > th.tau_add:
            out.append(_Action("insert", i, (d - th.mu) / th.sigma))
        elif config.delete and d < th.tau_del:
            out.append(_Action("delete", i, (th.mu - d) / th.sigma))
    return out


def plan_round(diff: PairDifferences, th: Thresholds, n: int, config: AdaptiveConfig, max_frames: int
               ) -> list[_Action]:
    """This round's non-overlapping actions, strongest first, within the frame-count limits."""
    return select(candidates(diff, th, config), n, config, max_frames)


def select(actions: list[_Action], n: int, config: AdaptiveConfig, max_frames: int) -> list[_Action]:
    """Non-overlapping `actions`, strongest first, within the frame-count limits (in pair order)."""
    used: set[int] = set()
    count, chosen = n, []
    for a in sorted(actions, key=lambda a: -a.score):
        frames = {a.pair, a.pair + 1}
        if frames & used:
            continue
        if a.op == "insert" and count + 1 > max_frames or a.op == "delete" and count - 1 < config.min_frames:
            continue
        used |= frames | ({a.pair - 1, a.pair + 2} if a.op == "delete" else set())
        count += 1 if a.op == "insert" else -1
        chosen.append(a)
    return sorted(chosen, key=lambda a: a.pair)


@dataclass
class AdaptResult:
    """Frames and captions after adaptive steps.

    Args:
        frames, captions: the adapted sequence.
        origin: per output frame, its index in the input (None for an inserted frame).
        record: the JSON-ready decision record (settings, every round's differences, thresholds and actions).
    """

    frames: list[Image.Image]
    captions: list[str]
    origin: list[int | None]
    record: dict[str, Any]


def adapt_frames(frames: SequenceABC[Image.Image], captions: SequenceABC[str], extractor: FeatureExtractor,
                 interpolate: Interpolator | None, config: AdaptiveConfig | None = None, seed: int = 0,
                 domain: str | None = None, plan: SequenceABC[str] | None = None) -> AdaptResult:
    """Run adaptive steps on one sequence of frames and captions.

    Args:
        frames, captions: the sequence (one caption per frame, at least 2 frames).
        extractor: where the three differences are read from.
        interpolate: generates the frame between two neighbours (required when insertion is on).
        config: thresholds, weights, budget (default :class:`AdaptiveConfig`).
        seed: base seed of the insertions (each gets ``seed + 1000 * round + position``).
        domain: the sequence's domain (the calibrated rule needs it).
        plan: the plan's captions; an inserted step takes the plan's step between its neighbours' steps.
    """
    config = config or AdaptiveConfig()
    frames, captions = list(frames), list(captions)
    if len(frames) != len(captions):
        raise ValueError(f"Adaptive steps need one caption per frame, got {len(frames)} frames and "
                         f"{len(captions)} captions.")
    if len(frames) < 2:
        raise ValueError(f"Adaptive steps need a sequence of at least 2 frames, got {len(frames)}.")
    if config.insert and interpolate is None:
        raise ValueError("Insertion needs an interpolator (a pipeline); pass one or set insert=False.")
    if len({f.size for f in frames}) != 1:
        raise ValueError(f"All frames must have one size for adaptive steps, got {sorted({f.size for f in frames})}.")
    max_frames = config.max_frames if config.max_frames is not None else max(2 * len(frames), config.min_frames)
    num_in, start = len(frames), time.perf_counter()
    origin: list[int | None] = list(range(num_in))
    ids = list(range(len(frames)))  # identity of each frame, to detect a repeated state
    next_id, seen = len(frames), {tuple(ids)}
    rounds, stopped = [], "budget"
    scales, th = None, None
    calibrated = config.calibration is not None and domain in config.calibration.domains
    for r in range(config.max_rounds):
        if calibrated:
            actions, found, info, why = _calibrated_round(frames, captions, origin, extractor, config, str(domain),
                                                          max_frames)
        else:
            diff = pair_differences(frames, captions, extractor, config.weights,
                                    None if config.recompute else scales, config.local)
            if th is None or config.recompute:
                scales, th = diff.scales, thresholds(diff.combined, config.k_add, config.k_del)
            actions, found = plan_round(diff, th, len(frames), config, max_frames), bool(candidates(diff, th, config))
            info = {"thresholds": asdict(th), "scales": dict(zip(TERMS, diff.scales)),
                    "pairs": [diff.pair(i) for i in range(len(diff.combined))]}
            why = {i: _sequence_reason(diff, th, i) for i in range(len(diff.combined))}
        before, done = len(frames), []
        for a in reversed(actions):  # right to left: indices to the left stay valid
            i = a.pair
            if a.op == "insert":
                from_plan = plan_caption(plan, captions[i], captions[i + 1])
                new_caption = from_plan or inserted_caption(captions[i + 1])
                frame = fill(interpolate, frames, captions, i, new_caption, seed + 1000 * r + i)
                frames.insert(i + 1, frame.convert("RGB").resize(frames[i].size) if frame.size != frames[i].size
                              else frame.convert("RGB"))
                captions.insert(i + 1, new_caption)
                origin.insert(i + 1, None)
                ids.insert(i + 1, next_id)
                next_id += 1
                done.append({"op": "insert", "between": [i, i + 1], "index": i + 1, **why[i],
                             "caption": new_caption, "caption_from": "plan" if from_plan else "right neighbour"})
            else:
                j = i + 1 if i + 1 < len(frames) - 1 else i  # keep the finished artifact
                keep = i if j == i + 1 else i + 1
                captions[keep] = merged_caption(captions[i], captions[i + 1])
                done.append({"op": "delete", "pair": [i, i + 1], "index": j, **why[i], "caption": captions[keep]})
                del frames[j], captions[j], origin[j], ids[j]
        rounds.append({"round": r, "num_frames_before": before, **info,
                       "actions": sorted(done, key=lambda d: d["index"])})
        if not done:
            stopped = "frame_limit" if found else "fixed_point"
            break
        if tuple(ids) in seen:
            stopped = "cycle"
            break
        seen.add(tuple(ids))
    captions = renumber(captions)
    if interpolate is not None and hasattr(interpolate, "describe"):
        insertion = interpolate.describe()
    else:
        insertion = {"kind": getattr(interpolate, "__name__", type(interpolate).__name__)} if interpolate else None
    settings = asdict(replace(config, max_frames=max_frames, calibration=None))
    settings["calibration"] = config.calibration.source if config.calibration is not None else None
    record = {"settings": settings, "rule": "calibrated" if calibrated else "sequence", "domain": domain,
              "insertion": insertion, "rounds": rounds, "stopped": stopped,
              "num_frames_in": num_in, "num_frames_out": len(frames), "origin": origin,
              "inserted": sum(d["op"] == "insert" for rd in rounds for d in rd["actions"]),
              "deleted": sum(d["op"] == "delete" for rd in rounds for d in rd["actions"]),
              "seconds": time.perf_counter() - start}
    return AdaptResult(frames, captions, origin, record)


def _sequence_reason(diff: PairDifferences, th: Thresholds, i: int) -> dict[str, Any]:
    """Why pair `i` was acted on under the sequence's own statistics (the values, the thresholds, one line)."""
    d = diff.combined[i]
    reason = f"D {d:.3f} > tau_add {th.tau_add:.3f}" if d > th.tau_add else f"D {d:.3f} < tau_del {th.tau_del:.3f}"
    return {**diff.pair(i), "rule": "sequence", "tau_add": th.tau_add, "tau_del": th.tau_del, "reason": reason}


def _calibrated_round(frames: list[Image.Image], captions: list[str], origin: list[int | None],
                      extractor: FeatureExtractor, config: AdaptiveConfig, domain: str, max_frames: int
                      ) -> tuple[list[_Action], bool, dict[str, Any], dict[int, dict[str, Any]]]:
    """One round under the training calibration: actions, whether any pair crossed, round info, per-pair reasons."""
    assert config.calibration is not None
    found, info, why = calibrated_candidates(frames, captions, origin, extractor, config.calibration, domain,
                                             config.insert, config.delete)
    actions = [_Action(op, i, score) for op, i, score in found]
    return select(actions, len(frames), config, max_frames), bool(found), info, why


def adapt_sequence(sequence: Sequence, extractor: FeatureExtractor, interpolate: Interpolator | None,
                   config: AdaptiveConfig | None = None, seed: int = 0) -> Sequence:
    """A :class:`Sequence` after adaptive steps; ``meta["adaptive"]`` holds the record, ``meta["plan"]`` the plan."""
    old = sequence.meta.get("plan") if isinstance(sequence.meta.get("plan"), dict) else None
    result = adapt_frames(sequence.frames, sequence.captions, extractor, interpolate, config, seed,
                          domain=sequence.domain, plan=(old or {}).get("captions"))
    plan = updated_plan(Plan.from_dict(old) if old else Plan(sequence.prompt, sequence.domain, sequence.captions),
                        result.captions)
    meta = {**sequence.meta, "adaptive": result.record, "plan": plan.to_dict()}
    return Sequence(result.frames, result.captions, sequence.prompt, sequence.domain, meta)


def updated_plan(plan: Plan, captions: list[str]) -> Plan:
    """`plan` with the adapted captions (its source and meta kept, ``meta["adapted"]`` set)."""
    return Plan(plan.title, plan.domain, list(captions), plan.source, {**plan.meta, "adapted": True})


def adapt_output(output: SequenceOutput, extractor: FeatureExtractor,
                 interpolators: SequenceABC[Interpolator | None], config: AdaptiveConfig | None = None,
                 seed: int = 0) -> SequenceOutput:
    """A :class:`SequenceOutput` after adaptive steps (DESIGN.md #13): frames, captions, grids and plans
    updated, each sequence's record in ``metadata[i]["adaptive"]``."""
    from procseq.layout import frames_to_grid

    if not output.frames:
        raise ValueError("Adaptive steps need decoded frames; generate with output_type='pil'.")
    if len(interpolators) != len(output.frames):
        raise ValueError(f"Pass one interpolator per sequence ({len(output.frames)}), got {len(interpolators)}.")
    frames, captions, grids, metadata, plans = [], [], [], [], []
    for k, (f, c, m) in enumerate(zip(output.frames, output.captions, output.metadata)):
        plan = output.plans[k] if output.plans else None
        domain = plan.domain if plan is not None else m.get("domain")
        result = adapt_frames(f, c, extractor, interpolators[k], config, seed, domain=domain,
                              plan=plan.captions if plan is not None else None)
        frames.append(result.frames)
        captions.append(result.captions)
        grids.append(frames_to_grid(result.frames))
        metadata.append({**m, "frames": len(result.frames), "adaptive": result.record})
        plans.append(updated_plan(plan, result.captions) if plan is not None else None)
    return SequenceOutput(images=grids, frames=frames, captions=captions, metadata=metadata,
                          plans=plans if output.plans else None)


__all__ = ["TERMS", "AdaptResult", "AdaptiveConfig", "Interpolator", "PairDifferences", "PipelineInterpolator",
           "Thresholds", "adapt_frames", "average_interpolator", "adapt_output", "adapt_sequence", "candidates", "inserted_caption", "merged_caption",
           "nearest_patch_distance", "pair_differences", "plan_round", "renumber", "thresholds", "updated_plan"]
