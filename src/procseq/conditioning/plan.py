"""The :class:`Plan`: title, domain and one caption per step, written before any frame (DESIGN.md #9)."""

from __future__ import annotations

import json
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
        """Inverse of :meth:`to_dict`; ``ValueError`` naming what is missing."""
        missing = [k for k in ("title", "domain", "captions") if k not in d]
        if missing:
            raise ValueError(f"A plan needs {', '.join(missing)}; got keys {sorted(d)}.")
        if not isinstance(d["captions"], list):
            raise ValueError("A plan's captions must be a list of strings, one per step.")
        return cls(str(d["title"]), str(d["domain"]), [str(c) for c in d["captions"]], str(d.get("source", "user")),
                   dict(d.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON (editable by hand)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`save` (or by hand)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); fix or rewrite the plan.") \
                from err


__all__ = ["Plan"]
