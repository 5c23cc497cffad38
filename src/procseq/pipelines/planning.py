"""Instruction -> :class:`Plan` (title, domain, one caption per step), before anything is encoded.

Every mode starts from a plan (DESIGN.md #9): the step captions are inputs, written before any frame
exists. The offline default, :func:`corpus_plan`, writes the steps in the corpus's own caption
language: it draws the domain's specs (attributes -> prompt + captions, no rendering), takes the one
whose prompt shares the most words and word pairs with the instruction, and stretches or merges its
captions to the number of steps asked for. Domains the corpus does not know get a generic template
(:func:`template_plan`). Any callable ``(prompt, domain, num_steps) -> Plan | list[str]`` plugs in.
"""

from __future__ import annotations

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
        """Write the plan as JSON (editable by hand)."""
        from procseq.outputs import write_json_atomic

        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`save` (or by hand)."""
        from procseq.jsonio import read_json

        try:
            return cls.from_dict(read_json(path))
        except ValueError as err:
            where = "" if str(path) in str(err) else f"{path}: "
            raise ValueError(f"{where}{err} Fix or rewrite the plan.") from None


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
def _domain_specs(domain: str, num_frames: int | None = None
                  ) -> tuple[tuple[tuple[str, ...], tuple[str, ...], str, dict[str, Any]], ...]:
    """(prompt words, captions, prompt, attributes) of a fixed draw of the domain's specs, every composition
    included; at `num_frames` steps when the domain renders that length (its own captions for it), else at
    the domain's v1 length."""
    from procseq.data.synthetic.base import HELD_OUT_LENGTHS, REGISTRY, stable_hash

    d = REGISTRY[domain]
    n = num_frames if num_frames in getattr(d, "lengths", ()) and num_frames != d.num_frames else None
    rng = np.random.default_rng(stable_hash("planner", domain) + (n or 0))
    out = []
    for i in range(SPECS_PER_DOMAIN):
        split = "test-compositional" if i % 5 == 0 else "train"
        if n is None:
            spec = d.sample(rng, 32, split)
        else:
            spec = d.sample(rng, 32, "test-length" if n in HELD_OUT_LENGTHS else split, num_frames=n)
        out.append((tuple(_words(spec.prompt)), tuple(spec.captions), spec.prompt, dict(spec.attributes)))
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
    specs = _domain_specs(domain, num_steps)
    best = max(range(len(specs)), key=lambda i: (_overlap(query, list(specs[i][0])), -i))
    captions = resample_captions(list(specs[best][1]), num_steps)
    return Plan(prompt, domain, captions, source="corpus",
                meta={"matched_prompt": specs[best][2], "attributes": _scalars(specs[best][3])})


def _scalars(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes an instruction can state (text and whole numbers; no layouts or random draws)."""
    return {k: v for k, v in attributes.items() if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))}


def make_plan(planner: Planner, prompt: str, domain: str, num_steps: int) -> Plan:
    """Call `planner` and check its answer is a plan of `num_steps` steps (a list of captions is wrapped)."""
    result = planner(prompt, domain, num_steps)
    plan = result if isinstance(result, Plan) else Plan(prompt, domain, list(result), source="custom")
    if plan.num_steps != num_steps:
        raise ValueError(f"The planner wrote {plan.num_steps} steps for a sequence of {num_steps} frames.")
    return plan


DOMAIN_WORDS: dict[str, tuple[str, ...]] = {
    "painting": ("painting", "paint", "painted", "canvas", "watercolour", "watercolor"),
    "line_drawing": ("drawing", "draw", "sketch", "ink", "line drawing"),
    "lego": ("lego", "brick", "bricks", "baseplate"),
    "pixel_art": ("pixel", "pixel art", "sprite"),
    "cooking": ("cook", "cooked", "cooking", "dish", "recipe", "plate", "fry", "bake", "served"),
    "emoji": ("emoji", "smiley", "icon"),
    "clay": ("clay", "sculpt", "sculpture", "pottery", "carved"),
    "sand_art": ("sand art", "jar", "layers"),
    "origami": ("origami", "fold", "folded", "folding"),
}
"""Words (and word pairs) that name a corpus domain in an instruction."""

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_STEPS = re.compile(r"(?<![\w-])(-?\d+|" + "|".join(NUMBER_WORDS) + r")[\s-]*steps?\b", re.I)
_LEAD = re.compile(r"^\s*(?:please\s+)?(?:show|teach|tell)?\s*(?:me\s+)?(?:how\s+to\s+|the\s+steps\s+to\s+)?"
                   r"(?:build|make|draw|paint|cook|create|sculpt|fold|do|prepare)?\s+", re.I)


def instruction_steps(instruction: str) -> int | None:
    """The step count an instruction asks for (``"in 12 steps"``, ``"a twelve-step ..."``), or None."""
    m = _STEPS.search(instruction)
    if m is None:
        return None
    from procseq.limits import step_count

    word = m.group(1).lower()
    return NUMBER_WORDS[word] if word in NUMBER_WORDS else step_count(word, "The step count")


def instruction_domain(instruction: str, domains: list[str] | None = None) -> str:
    """The corpus domain an instruction is about: the domain whose words it names most, else the domain with
    the corpus prompt closest to it (shared words and word pairs). `domains` limits the choice."""
    choices = [d for d in (domains or list(DOMAIN_WORDS)) if d in DOMAIN_WORDS]
    if not choices:
        raise ValueError(f"None of the domains {domains} is a corpus domain; pass the domain explicitly.")
    words = _words(instruction)
    pairs = {" ".join(p) for p in zip(words, words[1:])}
    hits = {d: sum(2 if " " in w else 1 for w in DOMAIN_WORDS[d] if (w in pairs if " " in w else w in words))
            for d in choices}
    best = max(choices, key=lambda d: hits[d])
    if hits[best] > 0:
        return best
    return max(choices, key=lambda d: max(_overlap(words, list(s[0])) for s in _domain_specs(d)))


def instruction_title(instruction: str) -> str:
    """What is being made: the instruction without its lead (``"show how to build"``) and step count."""
    text = _STEPS.sub("", instruction)
    text = re.sub(r"\b(?:in|with|using)\s*(?:a|an)?\s*$", "", text.strip(" .,:;!?"), flags=re.I)
    text = re.sub(r"\s+(?:in|with)\s+(?=[,.]|$)", "", text)
    text = _LEAD.sub("", text, count=1).strip(" .,:;!?")
    return re.sub(r"\s+", " ", text) or instruction.strip()


def plan_instruction(instruction: str, planner: Planner | None = None, domain: str | None = None,
                     num_steps: int | None = None, domains: list[str] | None = None) -> Plan:
    """An instruction (``"show how to build a blue LEGO tower in 12 steps"``) -> :class:`Plan`.

    The domain and the step count are read from the instruction unless given (default count: the domain's own
    number of frames, else 9); the title is the instruction without its lead and step count; then `planner`
    (default :func:`corpus_plan`) writes the steps, and the answer is checked (:func:`make_plan`).
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("The instruction is empty; say what to make, e.g. 'show how to build a blue LEGO tower'.")
    domain = domain or instruction_domain(instruction, domains)
    if num_steps is None:
        num_steps = instruction_steps(instruction)
    if num_steps is None:
        from procseq.data.synthetic import REGISTRY

        num_steps = REGISTRY[domain].num_frames if domain in REGISTRY else 9
    from procseq.limits import MAX_PLAN_STEPS, check_int

    check_int(num_steps, "The number of steps", 1, MAX_PLAN_STEPS)
    plan = make_plan(planner or corpus_plan, instruction_title(instruction), domain, num_steps)
    plan.meta.setdefault("instruction", instruction)
    return plan


__all__ = ["DOMAIN_WORDS", "Plan", "Planner", "corpus_plan", "instruction_domain", "instruction_steps",
           "instruction_title", "make_plan", "plan_instruction", "resample_captions", "template_plan"]
