"""Every training text of the corpus's domains, written without rendering a frame: what tokenizers are built from.

The v2 tokenizers were built from the base domains' training text only, so the adapter domains' words (clay,
sand art) were spelt out piece by piece and their prompts ran past 64 tokens. :func:`domain_texts` writes, for
every domain that trains (base and adapter domains of :data:`~procseq.data.synthetic.DOMAIN_PLAN`), the text
the corpus writer would: the canonical prompt and captions at every training length, every *train-pool*
template (:mod:`procseq.data.synthetic.phrasing`) and caption rewording, with the domain phrase and the step
count in front. The ``test`` pool (the ``test-paraphrase`` split's wording) is never used, so a held-out
wording stays held out of the tokenizers too (a test checks it).
"""

from __future__ import annotations

import numpy as np

from procseq.data.synthetic import DOMAIN_PLAN, get_domain
from procseq.data.synthetic.base import stable_hash, train_lengths
from procseq.data.synthetic.phrasing import fill_template, phrase_captions, pool_words, templates
from procseq.domain_prompt import with_domain

TRAINING_ROLES = ("base", "adapter")


def training_domains() -> list[str]:
    """The domains whose sequences are in a training split: the base and the adapter domains (not ``unseen``)."""
    return [name for name, role in DOMAIN_PLAN.items() if role.role in TRAINING_ROLES]


def spec_texts(domain: str, attributes: dict, prompt: str, captions: list[str], num_frames: int,
               rng: np.random.Generator) -> list[str]:
    """The training texts of one spec: its prompt, every train-pool template filled with its attributes (the
    synonyms drawn with `rng`), each with the domain phrase and the step count in front, and its captions
    as written and reworded (``phrase_captions`` with the train pool)."""
    prompts = [prompt] + [fill_template(domain, t, attributes, "train", rng) for t in templates(domain, "train")]
    prefixed = [with_domain(p, domain, num_frames) for p in prompts] + [with_domain(prompt, domain)]
    return prompts + prefixed + list(captions) + phrase_captions(captions, "train", rng, domain, attributes)


def domain_texts(domains: list[str] | None = None, per_length: int = 4, seed: int = 0) -> list[str]:
    """The training text of `domains` (default :func:`training_domains`): `per_length` specs of the ``train``
    split at each training length of each domain (:func:`spec_texts`), and every train-pool word once.
    Deterministic in `seed`; no frame is rendered."""
    texts = [" ".join(sorted(pool_words("train")))]
    for name in domains or training_domains():
        domain = get_domain(name)
        for n in train_lengths(name):
            for i in range(per_length):
                rng = np.random.default_rng([seed, stable_hash("texts", name, n, i)])
                spec = domain.sample(rng, 32, "train", n)
                texts += spec_texts(name, spec.attributes, spec.prompt, spec.captions, n, rng)
    return texts


__all__ = ["TRAINING_ROLES", "domain_texts", "spec_texts", "training_domains"]
