"""The domain as conditioning: a domain phrase in front of the prompt, as MakeAnything's captions carry one.

A model whose ``procseq.json`` says ``"domain_prefix": true`` was trained on prompts written by
:func:`with_domain`, and the pipeline writes its prompts the same way, so ``domain=`` reaches the
model on every call even when the prompt does not name the domain. ``"step_count_prefix": true`` adds
the number of steps ("LEGO building process in 9 steps: ..."): lengths 7, 8 and 9 share a 3x3 grid, and
without the count a model trained on all three cannot tell whether the last cell is a step or blank. Models without the flag (the
v1 procseq-tiny, FLUX.1) see the prompt unchanged. The empty prompt (the unconditional branch of
classifier-free guidance, and caption dropout in training) stays empty.
"""

from __future__ import annotations

DOMAIN_WORDS: dict[str, tuple[str, str]] = {
    "painting": ("painting", "a painting"), "line_drawing": ("line drawing", "a line drawing"),
    "lego": ("LEGO building", "a LEGO"), "pixel_art": ("pixel art", "pixel art"),
    "cooking": ("cooking", "served on a plate"), "emoji": ("emoji drawing", "an emoji"),
    "clay": ("clay sculpting", "a clay"), "sand_art": ("sand art", "sand art"), "origami": ("origami folding", "an origami"),
}
"""The one table of each domain's words: the phrase naming its process ("LEGO building") and the domain-only text a
known-frames (ReCraft) generation reads when the user gives no prompt ("a LEGO"; the picture carries the rest)."""

DOMAIN_PHRASES: dict[str, str] = {name: words[0] for name, words in DOMAIN_WORDS.items()}
DOMAIN_PROMPTS: dict[str, str] = {name: words[1] for name, words in DOMAIN_WORDS.items()}


def domain_prompt(domain: str) -> str:
    """The text prompt a known-frames generation uses for `domain` when the user gives none."""
    return DOMAIN_PROMPTS.get(domain, domain.replace("_", " "))


def domain_phrase(domain: str) -> str:
    """The words naming `domain`'s process (an unknown domain name is used with spaces for underscores)."""
    return DOMAIN_PHRASES.get(domain, domain.replace("_", " "))


def with_domain(prompt: str, domain: str, num_frames: int | None = None) -> str:
    """``"<domain phrase> process: <prompt>"``, or ``"<domain phrase> process in <n> steps: <prompt>"`` with
    `num_frames` (a model whose grids hold several lengths cannot see the count otherwise); the empty prompt
    stays empty."""
    if not prompt.strip():
        return prompt
    count = f" in {int(num_frames)} steps" if num_frames is not None else ""
    return f"{domain_phrase(domain)} process{count}: {prompt}"


def domain_prompts(prompts: list[str], domain: str, enabled: bool, num_frames: int | None = None) -> list[str]:
    """`prompts` with the domain phrase (and `num_frames`, when given) in front when `enabled` (the model was
    trained so), else unchanged."""
    return [with_domain(p, domain, num_frames) for p in prompts] if enabled else list(prompts)


__all__ = ["DOMAIN_PHRASES", "domain_phrase", "domain_prompts", "with_domain"]
