"""The :class:`Plan`: title, domain and one caption per step, written before any frame (DESIGN.md #9)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Plan:
    """The whole step plan of one sequence, made before any frame.

    Args:
        title: what is being made (the instruction or prompt, as given).
        domain: the process domain (explicit, never parsed from a caption).
        captions: one caption per step, first step first.
        source: which planner wrote it (``"corpus"``, ``"template"``, ``"user"``...).
    """

    title: str
    domain: str
    captions: list[str]
    source: str = "user"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.captions:
            raise ValueError("A plan needs at least one step caption.")
        if any(not isinstance(c, str) or not c.strip() for c in self.captions):
            raise ValueError("Every step caption of a plan must be non-empty text.")

    @property
    def num_steps(self) -> int:
        """Number of steps (frames)."""
        return len(self.captions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (the ``plan.json`` format)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming what is missing or of the wrong type."""
        from procseq.jsonio import check_fields
        from procseq.limits import MAX_PLAN_STEPS

        if not isinstance(d, dict):
            raise ValueError("A plan must be a JSON object with title, domain and captions.")
        check_fields(d, {"title": str, "domain": str, "captions": list, "source": str, "meta": dict}, "The plan",
                     required=("title", "domain", "captions"))
        if not all(isinstance(c, str) for c in d["captions"]):
            raise ValueError("A plan's captions must be a list of text, one per step.")
        if not 1 <= len(d["captions"]) <= MAX_PLAN_STEPS:
            raise ValueError(f"A plan has 1 to {MAX_PLAN_STEPS} step captions; this one has {len(d['captions'])}.")
        return cls(str(d["title"]), str(d["domain"]), [str(c) for c in d["captions"]], str(d.get("source", "user")),
                   dict(d.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON (editable by hand), atomically."""
        from procseq.outputs import write_json_atomic

        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`save` (or by hand), through procseq's one JSON reader."""
        from procseq.jsonio import read_json

        try:
            return cls.from_dict(read_json(path))
        except ValueError as err:
            where = "" if str(path) in str(err) else f"{path}: "
            raise ValueError(f"{where}{err} Fix or rewrite the plan.") from None


__all__ = ["Plan"]
