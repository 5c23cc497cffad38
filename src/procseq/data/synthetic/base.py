"""The shared base of the synthetic corpus: the Spec, the Domain interface, the registry, the plan.

A :class:`Domain` samples a :class:`Spec` (everything needed to re-render and to check a
sequence), renders it to frames, and *reads attributes back from pixels* (the checker)::

    spec, frames = generate("lego", seed=3)
    domain = get_domain("lego")
    assert domain.read(frames[-1], spec) == domain.expected(spec, spec.num_frames - 1)

Any length: every domain renders ``num_frames`` steps from 3 up to :attr:`Domain.max_frames`. A domain
whose process stretches (``stretches = True``: more bricks, more pixel chunks) renders that many
stages itself; the others have a fixed list of stages (``num_frames`` of them, the v1 length) and a
shorter sequence shows evenly spaced stages, each frame's caption naming every stage it covers
(:func:`frame_stages`, :func:`merge_captions`). :data:`HELD_OUT_LENGTHS` never occur in ``train``.

Compositional holdout: each domain names its composition keys (e.g. ``"red+circle"``, the product
of its ``composition_axes``); a deterministic ~20% of them (:meth:`Domain.held_out`) never appear
in ``train`` or ``test-seen`` and are the only ones in ``test-compositional`` and ``test-paraphrase``
(the same held-out specs in wordings never used in train: :mod:`procseq.data.synthetic.phrasing`).
"""

from __future__ import annotations

import itertools
import math
import numbers
import zlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SPLITS: tuple[str, ...] = ("train", "test-seen", "test-compositional", "test-length", "test-paraphrase")
MIN_FRAMES = 3
MAX_FRAMES = 16
HELD_OUT_LENGTHS: tuple[int, ...] = (7, 13)
"""Sequence lengths never drawn for ``train`` (nor ``test-seen``/``test-compositional``); ``test-length`` has only these."""
MIN_FRAME_SIZE = 32
MAX_FRAME_SIZE = 512  # a 9-frame grid of 512 px frames is already 2.4 megapixels per sequence
HOLDOUT_FRACTION = 0.2


@dataclass
class Spec:
    """Everything needed to re-render and to check one synthetic sequence."""

    domain: str
    seed: int
    split: str
    frame_size: int
    num_frames: int
    prompt: str
    captions: list[str]
    attributes: dict[str, Any]
    composition: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Spec":
        """Rebuild a Spec from :meth:`to_dict` output (extra keys are an error)."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown Spec fields {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}.")
        return cls(**{**d, "captions": list(d["captions"]), "attributes": dict(d["attributes"])})


def stable_hash(*parts: Any) -> int:
    """A process-independent 32-bit hash of `parts` (Python's hash() is salted per process)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def check_frame_size(frame_size: int) -> None:
    """Raise ValueError unless `frame_size` is a multiple of 8 from MIN_FRAME_SIZE to MAX_FRAME_SIZE."""
    if (not isinstance(frame_size, (int, np.integer)) or not MIN_FRAME_SIZE <= frame_size <= MAX_FRAME_SIZE
            or frame_size % 8):
        raise ValueError(
            f"frame_size={frame_size!r} is not supported: use a multiple of 8 from {MIN_FRAME_SIZE} to {MAX_FRAME_SIZE} "
            "(the objects must stay readable), e.g. 32 or 64."
        )


def check_split(split: str) -> None:
    """Raise ValueError for an unknown split name."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")


class Domain(ABC):
    """One procedural domain: sampling, rendering and the pixel checker.

    Subclasses set `name`, `num_frames` (the default, v1 length), `composition_axes` (lists of
    values whose "+"-joined product are the composition keys), and implement
    :meth:`make_attributes`, :meth:`describe`, :meth:`render_stages`, :meth:`read`,
    :meth:`expected_stage` and :meth:`invariant_keys`. A domain whose process stretches sets
    ``stretches = True`` and ``max_frames``: its stage methods then see ``spec.num_frames`` stages.
    """

    name: str = ""
    num_frames: int = 9
    max_frames: int | None = None
    stretches: bool = False
    composition_axes: tuple[list[str], ...] = ()

    # -- lengths -------------------------------------------------------------------------------

    @property
    def lengths(self) -> list[int]:
        """Every sequence length this domain renders (MIN_FRAMES up to max_frames, default num_frames)."""
        top = self.max_frames or self.num_frames
        return list(range(min(MIN_FRAMES, self.num_frames), top + 1))

    def check_length(self, num_frames: int) -> int:
        """`num_frames` as an int, or a ValueError naming the lengths this domain supports."""
        lengths = self.lengths
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames not in lengths:
            why = "" if self.stretches else f" (its process has {self.num_frames} fixed stages, so it cannot stretch further)"
            raise ValueError(f"{self.name} renders {lengths[0]} to {lengths[-1]} steps{why}; got num_frames={num_frames!r}.")
        return int(num_frames)

    def num_stages(self, num_frames: int) -> int:
        """How many process stages a `num_frames`-step sequence is cut from."""
        return int(num_frames) if self.stretches else self.num_frames

    def stages_of(self, spec: Spec) -> list[int]:
        """The process stage each frame of `spec` shows."""
        return frame_stages(self.num_stages(spec.num_frames), spec.num_frames)

    # -- compositions --------------------------------------------------------------------------

    def compositions(self) -> list[str]:
        """All composition keys of this domain, sorted."""
        return sorted("+".join(p) for p in itertools.product(*self.composition_axes))

    def held_out(self) -> set[str]:
        """The deterministic ~20% of composition keys reserved for ``test-compositional``."""
        keys = sorted(self.compositions(), key=lambda k: (stable_hash(self.name, k), k))
        return set(keys[: max(1, round(HOLDOUT_FRACTION * len(keys)))])

    def allowed(self, split: str) -> list[str]:
        """Composition keys `split` may draw from."""
        check_split(split)
        held = self.held_out()
        return sorted(held if split in ("test-compositional", "test-paraphrase") else set(self.compositions()) - held)

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, frame_size: int, split: str, num_frames: int | None = None) -> Spec:
        """Draw a spec for `split`: train/test-seen never hold a held-out composition, test-compositional only those.

        `num_frames` defaults to the domain's v1 length (and then draws exactly what v1 drew)."""
        check_frame_size(frame_size)
        n = self.check_length(self.num_frames if num_frames is None else num_frames)
        keys = self.allowed(split)
        composition = keys[int(rng.integers(len(keys)))]
        stages = self.num_stages(n)
        attrs = self.make_attributes(rng, composition.split("+"), stages)
        prompt, stage_captions = self.describe(attrs, stages)
        if len(stage_captions) != stages:
            raise AssertionError(f"{self.name}: {len(stage_captions)} captions for {stages} stages")
        captions = merge_captions(stage_captions, frame_stages(stages, n))
        return Spec(self.name, -1, split, int(frame_size), n, prompt, captions, attrs, composition)

    @abstractmethod
    def make_attributes(self, rng: np.random.Generator, composition: list[str], num_stages: int) -> dict[str, Any]:
        """The JSON-serialisable attributes of a new sequence of `num_stages` stages, given its composition values."""

    @abstractmethod
    def describe(self, attrs: dict[str, Any], num_stages: int) -> tuple[str, list[str]]:
        """The prompt and one caption per process stage, composed from `attrs`."""

    # -- rendering and checking ----------------------------------------------------------------

    def render(self, spec: Spec) -> list[np.ndarray]:
        """`spec.num_frames` uint8 arrays of shape `(S, S, 3)`, deterministic from `spec`."""
        stages = self.render_stages(spec)
        return [stages[k] for k in self.stages_of(spec)]

    def expected(self, spec: Spec, step: int) -> dict[str, Any]:
        """Ground truth at frame `step` with the same keys as :meth:`read`."""
        return self.expected_stage(spec, self.stages_of(spec)[step])

    def render_stages(self, spec: Spec) -> list[np.ndarray]:
        """One uint8 `(S, S, 3)` array per process stage (``num_stages(spec.num_frames)`` of them)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither render nor render_stages")

    def expected_stage(self, spec: Spec, stage: int) -> dict[str, Any]:
        """Ground truth at process stage `stage` with the same keys as :meth:`read`."""
        raise NotImplementedError(f"{type(self).__name__} implements neither expected nor expected_stage")

    @abstractmethod
    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        """The checker: every attribute key of `spec` read back from the pixels of `frame` (None = not visible)."""

    @abstractmethod
    def invariant_keys(self, spec: Spec) -> list[str]:
        """Keys whose value must not change across steps once visible."""

    def accuracy(self, frame: np.ndarray, spec: Spec, step: int) -> float:
        """Fraction of keys where ``read(frame)`` equals ``expected(spec, step)``."""
        return attribute_accuracy(self.read(frame, spec), self.expected(spec, step))


def frame_stages(num_stages: int, num_frames: int) -> list[int]:
    """The stage shown by each of `num_frames` frames cut from `num_stages` stages: evenly spaced,
    first and last kept (``frame_stages(9, 3) == [0, 4, 8]``); every stage when the counts match."""
    if not 1 <= num_frames <= num_stages:
        raise ValueError(f"{num_frames} frames cannot be cut from {num_stages} stages; use 1 to {num_stages}.")
    if num_frames == num_stages:
        return list(range(num_stages))
    if num_frames == 1:
        return [num_stages - 1]
    return [int(k) for k in np.rint(np.linspace(0, num_stages - 1, num_frames))]


def merge_captions(stage_captions: list[str], stages: list[int]) -> list[str]:
    """One caption per frame: frame i names every stage after frame i-1's up to its own
    (``"a, b and c"``), so a shorter sequence still says everything that happens."""
    out, prev = [], -1
    for k in stages:
        parts = stage_captions[prev + 1: k + 1]
        out.append(parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])
        prev = k
    return out


def values_equal(a: Any, b: Any) -> bool:
    """Attribute equality: numbers compare with a small tolerance, containers element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)) and a == b)
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def attribute_accuracy(read: dict[str, Any], expected: dict[str, Any]) -> float:
    """Mean over the keys of `expected` of ``values_equal(read[k], expected[k])`` (1.0 when nothing is expected).

    The one definition of attribute accuracy: the corpus checks and the evaluation both use it."""
    if not expected:
        return 1.0
    return sum(values_equal(read.get(k), v) for k, v in expected.items()) / len(expected)


REGISTRY: dict[str, Domain] = {}


def register(cls: type[Domain]) -> type[Domain]:
    """Class decorator: instantiate a domain and add it to REGISTRY under its name."""
    REGISTRY[cls.name] = cls()
    return cls


def get_domain(name: str) -> Domain:
    """The registered domain called `name` (ValueError listing the known domains otherwise)."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown domain {name!r}; known domains: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def generate(domain: str, seed: int, frame_size: int = 32, split: str = "train",
             num_frames: int | None = None) -> tuple[Spec, list[np.ndarray]]:
    """Sample (deterministically from `seed`) and render one sequence of `domain` with `num_frames`
    steps (default: the domain's v1 length, drawn exactly as v1 drew it)."""
    d = get_domain(domain)
    check_split(split)
    check_frame_size(frame_size)
    spec = d.sample(np.random.default_rng([int(seed), stable_hash(domain, split)]), frame_size, split, num_frames)
    spec.seed = int(seed)
    return spec, d.render(spec)


@dataclass(frozen=True)
class DomainRole:
    """Where a domain goes in the corpus: ``base`` (trained into the embedded model), ``adapter``
    (reserved for adapter training, at `train_size` sequences) or ``unseen`` (test splits only)."""

    role: str
    train_size: int | None = None


# The corpus plan: six base domains (four 9-frame, two 4-frame), two imbalanced adapter domains
# (one with <= 50 sequences) and one domain never trained on.
DOMAIN_PLAN: dict[str, DomainRole] = {
    "painting": DomainRole("base"),
    "line_drawing": DomainRole("base"),
    "lego": DomainRole("base"),
    "pixel_art": DomainRole("base"),
    "cooking": DomainRole("base"),
    "emoji": DomainRole("base"),
    "clay": DomainRole("adapter", 300),
    "sand_art": DomainRole("adapter", 40),
    "origami": DomainRole("unseen"),
}


def domains_with_role(role: str) -> list[str]:
    """Names of the planned domains with `role` (``base``, ``adapter`` or ``unseen``)."""
    return [n for n, r in DOMAIN_PLAN.items() if r.role == role]


def train_lengths(domain: str) -> list[int]:
    """The lengths of `domain` that ``train`` (and the other non-length test splits) draw from."""
    return [n for n in get_domain(domain).lengths if n not in HELD_OUT_LENGTHS]


def held_out_lengths(domain: str) -> list[int]:
    """The lengths of `domain` that only ``test-length`` draws (empty if its process is too short)."""
    return [n for n in get_domain(domain).lengths if n in HELD_OUT_LENGTHS]


__all__ = [
    "DOMAIN_PLAN", "Domain", "DomainRole", "HELD_OUT_LENGTHS", "MAX_FRAMES", "MIN_FRAMES", "REGISTRY", "SPLITS",
    "Spec", "attribute_accuracy", "domains_with_role", "frame_stages", "generate", "get_domain", "held_out_lengths",
    "merge_captions", "register", "stable_hash", "train_lengths", "values_equal",
]
