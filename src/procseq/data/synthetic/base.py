"""The shared base of the synthetic corpus: the Spec, the Domain interface, the registry, the plan.

A :class:`Domain` samples a :class:`Spec` (everything needed to re-render and to check a
sequence), renders it to frames, and *reads attributes back from pixels* (the checker)::

    spec, frames = generate("lego", seed=3)
    domain = get_domain("lego")
    assert domain.read(frames[-1], spec) == domain.expected(spec, spec.num_frames - 1)

Compositional holdout: each domain names its composition keys (e.g. ``"red+circle"``, the product
of its ``composition_axes``); a deterministic ~20% of them (:meth:`Domain.held_out`) never appear
in ``train`` or ``test-seen`` and are the only ones in ``test-compositional``.
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

SPLITS: tuple[str, ...] = ("train", "test-seen", "test-compositional")
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

    Subclasses set `name`, `num_frames`, `composition_axes` (lists of values whose "+"-joined
    product are the composition keys), and implement :meth:`make_spec`, :meth:`render`,
    :meth:`read`, :meth:`expected` and :meth:`invariant_keys`.
    """

    name: str = ""
    num_frames: int = 9
    composition_axes: tuple[list[str], ...] = ()

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
        return sorted(held if split == "test-compositional" else set(self.compositions()) - held)

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, frame_size: int, split: str) -> Spec:
        """Draw a spec for `split`: train/test-seen never hold a held-out composition, test-compositional only those."""
        check_frame_size(frame_size)
        keys = self.allowed(split)
        composition = keys[int(rng.integers(len(keys)))]
        attrs = self.make_attributes(rng, composition.split("+"))
        prompt, captions = self.describe(attrs)
        if len(captions) != self.num_frames:
            raise AssertionError(f"{self.name}: {len(captions)} captions for {self.num_frames} frames")
        return Spec(self.name, -1, split, int(frame_size), self.num_frames, prompt, captions, attrs, composition)

    @abstractmethod
    def make_attributes(self, rng: np.random.Generator, composition: list[str]) -> dict[str, Any]:
        """The JSON-serialisable attributes of a new sequence, given its composition values."""

    @abstractmethod
    def describe(self, attrs: dict[str, Any]) -> tuple[str, list[str]]:
        """The prompt and the per-frame captions composed from `attrs`."""

    # -- rendering and checking ----------------------------------------------------------------

    @abstractmethod
    def render(self, spec: Spec) -> list[np.ndarray]:
        """`num_frames` uint8 arrays of shape `(S, S, 3)`, deterministic from `spec`."""

    @abstractmethod
    def read(self, frame: np.ndarray, spec: Spec) -> dict[str, Any]:
        """The checker: every attribute key of `spec` read back from the pixels of `frame` (None = not visible)."""

    @abstractmethod
    def expected(self, spec: Spec, step: int) -> dict[str, Any]:
        """Ground truth at `step` with the same keys as :meth:`read`."""

    @abstractmethod
    def invariant_keys(self, spec: Spec) -> list[str]:
        """Keys whose value must not change across steps once visible."""

    def accuracy(self, frame: np.ndarray, spec: Spec, step: int) -> float:
        """Fraction of keys where ``read(frame)`` equals ``expected(spec, step)``."""
        return attribute_accuracy(self.read(frame, spec), self.expected(spec, step))


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


def generate(domain: str, seed: int, frame_size: int = 32, split: str = "train") -> tuple[Spec, list[np.ndarray]]:
    """Sample (deterministically from `seed`) and render one sequence of `domain`."""
    d = get_domain(domain)
    check_split(split)
    check_frame_size(frame_size)
    spec = d.sample(np.random.default_rng([int(seed), stable_hash(domain, split)]), frame_size, split)
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


__all__ = [
    "DOMAIN_PLAN", "Domain", "DomainRole", "REGISTRY", "SPLITS", "Spec", "attribute_accuracy",
    "domains_with_role", "generate", "get_domain", "register", "stable_hash", "values_equal",
]
