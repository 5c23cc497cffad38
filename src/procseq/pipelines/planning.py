"""Instruction -> :class:`Plan` (title, domain, one caption per step), before anything is encoded.

Every mode starts from a plan (DESIGN.md #9): the step captions are inputs, written before any frame
exists. The offline default, :func:`corpus_plan`, writes the steps in the corpus's own caption
language: it draws the domain's specs (attributes -> prompt + captions, no rendering), takes the one
whose prompt shares the most words and word pairs with the instruction, and stretches or merges its
captions to the number of steps asked for. Domains the corpus does not know get a generic template
(:func:`template_plan`). Any callable ``(prompt, domain, num_steps) -> Plan | list[str]`` plugs in.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

PlannerResult = Union["Plan", list[str]]
Planner = Callable[[str, str, int], PlannerResult]

SPECS_PER_DOMAIN = 600
GENERIC_STAGES = ("start", "build up the main form", "refine", "finish")


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


def resample_captions(captions: list[str], num_steps: int) -> list[str]:
    """Stretch or merge `captions` to `num_steps`, keeping the first and the last step."""
    if num_steps < 1:
        raise ValueError(f"A plan needs at least one step, got {num_steps}.")
    if num_steps == len(captions):
        return list(captions)
    if num_steps == 1:
        return [captions[-1]]
    picks = np.linspace(0, len(captions) - 1, num_steps).round().astype(int)
    return [captions[i] for i in picks]


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _overlap(query: list[str], text: list[str]) -> float:
    """Shared words plus twice the shared adjacent word pairs (binds colours to objects)."""
    uni = sum((Counter(query) & Counter(text)).values())
    bi = sum((Counter(zip(query, query[1:])) & Counter(zip(text, text[1:]))).values())
    return uni + 2.0 * bi


@lru_cache(maxsize=None)
def _domain_specs(domain: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...]:
    """(prompt words, captions, prompt) of a fixed draw of the domain's specs, every composition included."""
    from procseq.data.synthetic.base import REGISTRY, stable_hash

    d = REGISTRY[domain]
    rng = np.random.default_rng(stable_hash("planner", domain))
    out = []
    for i in range(SPECS_PER_DOMAIN):
        split = "test-compositional" if i % 5 == 0 else "train"
        spec = d.sample(rng, 32, split)
        out.append((tuple(_words(spec.prompt)), tuple(spec.captions), spec.prompt))
    return tuple(out)


def template_plan(prompt: str, domain: str, num_steps: int) -> Plan:
    """A generic plan (``"start"``, ``"build up the main form"``, ...) for domains the corpus does not know."""
    if num_steps < 1:
        raise ValueError(f"A plan needs at least one step, got {num_steps}.")
    stages = resample_captions(list(GENERIC_STAGES), max(num_steps, 1))
    return Plan(prompt, domain, [f"{s} ({prompt})" for s in stages], source="template")


def corpus_plan(prompt: str, domain: str, num_steps: int) -> Plan:
    """The offline planner: the domain's own caption language, attributes taken from the closest corpus spec."""
    from procseq.data.synthetic import REGISTRY

    if domain not in REGISTRY:
        return template_plan(prompt, domain, num_steps)
    query = _words(prompt)
    specs = _domain_specs(domain)
    best = max(range(len(specs)), key=lambda i: (_overlap(query, list(specs[i][0])), -i))
    captions = resample_captions(list(specs[best][1]), num_steps)
    return Plan(prompt, domain, captions, source="corpus", meta={"matched_prompt": specs[best][2]})


def make_plan(planner: Planner, prompt: str, domain: str, num_steps: int) -> Plan:
    """Call `planner` and check its answer is a plan of `num_steps` steps (a list of captions is wrapped)."""
    result = planner(prompt, domain, num_steps)
    plan = result if isinstance(result, Plan) else Plan(prompt, domain, list(result), source="custom")
    if plan.num_steps != num_steps:
        raise ValueError(f"The planner wrote {plan.num_steps} steps for a sequence of {num_steps} frames.")
    return plan


__all__ = ["Plan", "Planner", "corpus_plan", "make_plan", "resample_captions", "template_plan"]
