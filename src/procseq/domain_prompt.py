"""The domain as conditioning: a domain phrase in front of the prompt, as MakeAnything's captions carry one.

A model whose ``procseq.json`` says ``"domain_prefix": true`` was trained on prompts written by
:func:`with_domain`, and the pipeline writes its prompts the same way, so ``domain=`` reaches the
model on every call even when the prompt does not name the domain. Models without the flag (the
v1 procseq-tiny, FLUX.1) see the prompt unchanged. The empty prompt (the unconditional branch of
classifier-free guidance, and caption dropout in training) stays empty.
"""

from __future__ import annotations

DOMAIN_PHRASES: dict[str, str] = {
    "painting": "painting", "line_drawing": "line drawing", "lego": "LEGO building", "pixel_art": "pixel art",
    "cooking": "cooking", "emoji": "emoji drawing", "clay": "clay sculpting", "sand_art": "sand art",
    "origami": "origami folding",
}


def domain_phrase(domain: str) -> str:
    """The words naming `domain`'s process (an unknown domain name is used with spaces for underscores)."""
    return DOMAIN_PHRASES.get(domain, domain.replace("_", " "))


def with_domain(prompt: str, domain: str) -> str:
    """``"<domain phrase> process: <prompt>"``; the empty prompt stays empty."""
    return f"{domain_phrase(domain)} process: {prompt}" if prompt.strip() else prompt


def domain_prompts(prompts: list[str], domain: str, enabled: bool) -> list[str]:
    """`prompts` with the domain phrase in front when `enabled` (the model was trained so), else unchanged."""
    return [with_domain(p, domain) for p in prompts] if enabled else list(prompts)


__all__ = ["DOMAIN_PHRASES", "domain_phrase", "domain_prompts", "with_domain"]
