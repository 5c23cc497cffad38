"""Instruction -> :class:`Plan` (title, domain, one caption per step), before anything is encoded.

Every mode starts from a plan (DESIGN.md #9): the step captions are inputs, written before any frame
exists. The offline default, :func:`corpus_plan`, reads the prompt into the domain's own attributes
(:mod:`procseq.planning.parser`), chooses the attributes the prompt does not name the way the corpus does
and writes the captions with the domain's caption grammar (:mod:`procseq.planning.writer`), so no caption
contradicts the prompt (DESIGN.md #16). Domains the corpus does not know get a generic template
(:func:`template_plan`). Any callable ``(prompt, domain, num_steps) -> Plan | list[str]`` plugs in.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Union

import numpy as np

from procseq.conditioning.plan import Plan

PlannerResult = Union[Plan, list[str]]
Planner = Callable[[str, str, int], PlannerResult]

SPECS_PER_DOMAIN = 600
GENERIC_STAGES = ("start", "build up the main form", "refine", "finish")


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
    """The offline planner: the prompt's own values (:func:`~procseq.planning.parser.parse_prompt`), the others
    chosen as the corpus does, written in the domain's caption grammar; a generic plan for other domains. Words
    read through WordNet are recorded in ``meta["read_as"]`` (``{"vermilion": "red"}``)."""
    from procseq.data.synthetic import REGISTRY
    from procseq.planning.parser import mapped_words, parse_prompt, unplaced_colors

    if domain not in REGISTRY:
        return template_plan(prompt, domain, num_steps)
    asked = parse_prompt(domain, prompt)
    plan = attribute_plan(prompt, domain, num_steps, asked)
    if read_as := mapped_words(domain, prompt):
        plan.meta["read_as"] = read_as
    described = " ".join([plan.meta["matched_prompt"], *plan.captions])
    if unplaced := unplaced_colors(domain, prompt, described):  # named, but not a value this domain draws
        plan.meta["not_drawn"] = unplaced
    return plan


def attribute_plan(title: str, domain: str, num_steps: int, asked: dict[str, Any], source: str = "corpus",
                   seed_text: str | None = None) -> Plan:
    """The plan of a corpus domain from the attribute values `asked` (from a prompt or a picture): the other
    values chosen as the corpus does (seeded by `seed_text`, default `title`) and recorded in
    ``meta["chosen"]``, the named ones in ``meta["asked"]``; captions in the domain's own grammar."""
    from procseq.data.synthetic import REGISTRY
    from procseq.planning.writer import complete_attributes, num_stages, scalars, write_captions

    if num_steps < 1:
        raise ValueError(f"A plan needs at least one step, got {num_steps}.")
    stages = num_stages(REGISTRY[domain], num_steps, asked)
    attrs, chosen = complete_attributes(domain, asked, stages, seed_text if seed_text is not None else title)
    captions = write_captions(domain, attrs, stages, num_steps)
    corpus_prompt = REGISTRY[domain].describe(attrs, stages)[0]  # the corpus's own wording of these attributes
    return Plan(title, domain, captions, source=source, meta={"attributes": scalars(attrs), "asked": dict(asked),
                                                               "chosen": chosen, "matched_prompt": corpus_prompt})


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


def natural_steps(domain: str, prompt: str) -> int:
    """The step count a prompt implies: a stretching domain's named count (``"twelve bricks"``: 13 steps), else the
    domain's own number of frames (9 for a domain the corpus does not know)."""
    from procseq.data.synthetic import REGISTRY
    from procseq.planning.parser import parse_prompt
    from procseq.planning.writer import num_stages

    if domain not in REGISTRY:
        return 9
    d = REGISTRY[domain]
    return num_stages(d, d.num_frames, parse_prompt(domain, prompt)) if d.stretches else d.num_frames


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
        num_steps = natural_steps(domain, instruction_title(instruction))
    from procseq.limits import MAX_PLAN_STEPS, check_int

    check_int(num_steps, "The number of steps", 1, MAX_PLAN_STEPS)
    plan = make_plan(planner or corpus_plan, instruction_title(instruction), domain, num_steps)
    plan.meta.setdefault("instruction", instruction)
    return plan


__all__ = ["DOMAIN_WORDS", "Plan", "Planner", "attribute_plan", "corpus_plan", "instruction_domain", "instruction_steps",
           "instruction_title", "make_plan", "natural_steps", "plan_instruction", "resample_captions", "template_plan"]
