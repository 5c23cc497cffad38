"""Adaptive steps (ProcessMaker stage 2): insert a frame where neighbours differ too much, delete one where too little.

A window slides over adjacent frame pairs ``(i, i+1)`` (stride 1) and reads three differences from a
pluggable :class:`~procseq.models.features.FeatureExtractor`:

- **global** ``g_i``: cosine distance of the two frames' image embeddings;
- **local** ``l_i``: mean nearest-patch cosine distance of their patch features (symmetrised);
- **semantic** ``s_i``: cosine distance of the two step captions' text embeddings.

Each term is divided by its mean over the sequence's pairs (so the three are on one scale) and combined,
``D_i = alpha * g_i + beta * l_i + (1 - alpha - beta) * s_i``. The thresholds come from the sequence's own
statistics: ``tau_add = mu + k_add * sigma`` and ``tau_del = mu - k_del * sigma`` (mean and population
standard deviation of ``D``). A pair above ``tau_add`` gets a frame inserted between its frames, generated
from both neighbours through the known-frames mechanism (a 3-frame generation with cells 0 and 2 known,
DESIGN.md #10); a pair below ``tau_del`` loses its later frame (its earlier one when the later is the
finished artifact). Rounds repeat until nothing changes (a fixed point), a state repeats, or the round
budget is spent (``record["stopped"]``: ``fixed_point``, ``frame_limit`` when the only actions left would
leave the frame range, ``cycle`` or ``budget``); the frame count never leaves ``[min_frames, max_frames]``. Captions follow the frames
(an inserted step is the first part of the step after it; a deleted step's caption merges into the one
kept; ``Step N:`` numbering is renumbered), the plan is updated, and every decision (what, where, the
three differences, the thresholds) is recorded. In the record, a round's ``pairs`` and each action's
``between`` / ``pair`` / ``index`` count frames of the sequence as that round started (an insertion's
``index`` is the frame it went before); ``origin`` maps every output frame to its input frame.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence as SequenceABC
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from procseq.models.features import FeatureExtractor
from procseq.conditioning.plan import Plan
from procseq.pipelines.output import SequenceOutput
from procseq.sequence import Sequence

Interpolator = Callable[[Image.Image, Image.Image, list[str], int], Image.Image]
"""``(left, right, [left caption, new caption, right caption], seed) -> the frame between them``."""

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


EPS = 1e-6
"""Distances below this are rounding noise and count as 0 (a term that is 0 everywhere drops out)."""
SIGMA_REL = 1e-3
"""A sequence whose ``sigma`` is below this fraction of ``mu`` has all pairs alike: no action."""


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = 1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)
    return torch.where(d < EPS, torch.zeros_like(d), d)


def nearest_patch_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over the patches of `a` `(P, C)` of the cosine distance to their nearest patch of `b`, symmetrised."""
    an = torch.nn.functional.normalize(a.double(), dim=-1, eps=1e-12)
    bn = torch.nn.functional.normalize(b.double(), dim=-1, eps=1e-12)
    d = (1.0 - an @ bn.T).clamp_min(0)
    value = float(0.5 * (d.min(dim=1).values.mean() + d.min(dim=0).values.mean()))
    return value if value >= EPS else 0.0


def pair_differences(frames: SequenceABC[Image.Image], captions: SequenceABC[str], extractor: FeatureExtractor,
                     weights: tuple[float, float, float], scales: tuple[float, float, float] | None = None
                     ) -> PairDifferences:
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
    loc = np.array([nearest_patch_distance(image.patches[i], image.patches[i + 1]) for i in range(len(frames) - 1)])
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


def _strip_number(caption: str) -> str:
    return re.sub(r"^\s*(?:step\s*)?\d+\s*[:.)-]\s*", "", caption, flags=re.IGNORECASE)


def inserted_caption(right: str) -> str:
    """The caption of a step inserted before `right`: the first part of that step (numbering: see :func:`renumber`)."""
    return f"{right} (first part)"


def merged_caption(kept: str, removed: str) -> str:
    """The caption kept when a step is deleted: the two actions, once each."""
    a, b = _strip_number(kept), _strip_number(removed)
    if a == b or b in a:
        return kept
    return f"{kept}; {b}"


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
    used: set[int] = set()
    count, chosen = n, []
    for a in sorted(candidates(diff, th, config), key=lambda a: -a.score):
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
                 interpolate: Interpolator | None, config: AdaptiveConfig | None = None, seed: int = 0
                 ) -> AdaptResult:
    """Run adaptive steps on one sequence of frames and captions.

    Args:
        frames, captions: the sequence (one caption per frame, at least 2 frames).
        extractor: where the three differences are read from.
        interpolate: generates the frame between two neighbours (required when insertion is on).
        config: thresholds, weights, budget (default :class:`AdaptiveConfig`).
        seed: base seed of the insertions (each gets ``seed + 1000 * round + position``).
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
    for r in range(config.max_rounds):
        diff = pair_differences(frames, captions, extractor, config.weights, None if config.recompute else scales)
        if th is None or config.recompute:
            scales, th = diff.scales, thresholds(diff.combined, config.k_add, config.k_del)
        actions = plan_round(diff, th, len(frames), config, max_frames)
        before, done = len(frames), []
        for a in reversed(actions):  # right to left: indices to the left stay valid
            i = a.pair
            if a.op == "insert":
                new_caption = inserted_caption(captions[i + 1])
                frame = interpolate(frames[i], frames[i + 1], [captions[i], new_caption, captions[i + 1]],
                                    seed + 1000 * r + i)
                frames.insert(i + 1, frame.convert("RGB").resize(frames[i].size) if frame.size != frames[i].size
                              else frame.convert("RGB"))
                captions.insert(i + 1, new_caption)
                origin.insert(i + 1, None)
                ids.insert(i + 1, next_id)
                next_id += 1
                done.append({"op": "insert", "between": [i, i + 1], "index": i + 1, **diff.pair(i)})
            else:
                j = i + 1 if i + 1 < len(frames) - 1 else i  # keep the finished artifact
                keep = i if j == i + 1 else i + 1
                captions[keep] = merged_caption(captions[keep], captions[j])
                done.append({"op": "delete", "pair": [i, i + 1], "index": j, **diff.pair(i)})
                del frames[j], captions[j], origin[j], ids[j]
        rounds.append({"round": r, "num_frames_before": before,
                       "thresholds": asdict(th), "scales": dict(zip(TERMS, diff.scales)),
                       "pairs": [diff.pair(i) for i in range(len(diff.combined))],
                       "actions": sorted(done, key=lambda d: d["index"])})
        if not done:
            stopped = "frame_limit" if candidates(diff, th, config) else "fixed_point"
            break
        if tuple(ids) in seen:
            stopped = "cycle"
            break
        seen.add(tuple(ids))
    captions = renumber(captions)
    record = {"settings": {**asdict(replace(config, max_frames=max_frames))}, "rounds": rounds, "stopped": stopped,
              "num_frames_in": num_in, "num_frames_out": len(frames), "origin": origin,
              "inserted": sum(d["op"] == "insert" for rd in rounds for d in rd["actions"]),
              "deleted": sum(d["op"] == "delete" for rd in rounds for d in rd["actions"]),
              "seconds": time.perf_counter() - start}
    return AdaptResult(frames, captions, origin, record)


class PipelineInterpolator:
    """Insertion through the known-frames mechanism: a 3-frame generation with cells 0 and 2 known.

    Args:
        pipe: a :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` (its condition LoRA loads on use).
        prompt, domain: the sequence's prompt and domain.
        call_kwargs: more pipeline arguments (``num_inference_steps``, ``true_cfg_scale``, ``adapter_weights``...).
    """

    def __init__(self, pipe: Any, prompt: str, domain: str, **call_kwargs: Any):
        self.pipe, self.prompt, self.domain, self.call_kwargs = pipe, prompt, domain, call_kwargs

    def __call__(self, left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
        """The middle frame of ``pipe(prompt, frames=3, known={0: left, 2: right})``."""
        out = self.pipe(self.prompt, domain=self.domain, frames=3, frame_size=left.size[0],
                        known={0: left, 2: right}, captions=captions,
                        generator=torch.Generator("cpu").manual_seed(seed), **self.call_kwargs)
        return out.frames[0][1]


def average_interpolator(left: Image.Image, right: Image.Image, captions: list[str], seed: int) -> Image.Image:
    """A model-free insertion: the pixel average of the two neighbours (a baseline, and a fallback)."""
    return Image.blend(left.convert("RGB"), right.convert("RGB"), 0.5)


def adapt_sequence(sequence: Sequence, extractor: FeatureExtractor, interpolate: Interpolator | None,
                   config: AdaptiveConfig | None = None, seed: int = 0) -> Sequence:
    """A :class:`Sequence` after adaptive steps; ``meta["adaptive"]`` holds the record, ``meta["plan"]`` the plan."""
    result = adapt_frames(sequence.frames, sequence.captions, extractor, interpolate, config, seed)
    old = sequence.meta.get("plan") if isinstance(sequence.meta.get("plan"), dict) else None
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
        result = adapt_frames(f, c, extractor, interpolators[k], config, seed)
        frames.append(result.frames)
        captions.append(result.captions)
        grids.append(frames_to_grid(result.frames))
        metadata.append({**m, "frames": len(result.frames), "adaptive": result.record})
        plan = output.plans[k] if output.plans else None
        plans.append(updated_plan(plan, result.captions) if plan is not None else None)
    return SequenceOutput(images=grids, frames=frames, captions=captions, metadata=metadata,
                          plans=plans if output.plans else None)


__all__ = ["TERMS", "AdaptResult", "AdaptiveConfig", "Interpolator", "PairDifferences", "PipelineInterpolator",
           "Thresholds", "adapt_frames", "average_interpolator", "adapt_output", "adapt_sequence", "candidates", "inserted_caption", "merged_caption",
           "nearest_patch_distance", "pair_differences", "plan_round", "renumber", "thresholds", "updated_plan"]
