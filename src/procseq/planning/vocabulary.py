"""Words a model trained on the synthetic corpus cannot know, reported instead of silently ignored.

The embedded model's tokenizers were built from the corpus's text, and its text encoders learned only
those words. :func:`corpus_words` is that vocabulary (every template, synonym, caption and attribute
value of the training pool, and the domain phrases); :func:`unknown_words` lists the words of a prompt
outside it (and outside the tokenizer's whole words). A model with real text encoders (FLUX.1) has no
such limit and nothing is reported (:func:`reports_unknown_words`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

_LETTERS = re.compile(r"[a-z]+")


WORDS_FILE = Path(__file__).with_name("corpus_words.txt")
"""The vocabulary :func:`compute_corpus_words` derives, shipped so that a generation does not derive it again
(0.7 CPU s); a test checks it equals a fresh derivation, and :func:`write_corpus_words` rewrites it."""


@lru_cache(maxsize=1)
def corpus_words() -> frozenset[str]:
    """Every word of the corpus's training text (:func:`compute_corpus_words`), read from :data:`WORDS_FILE`."""
    return frozenset(WORDS_FILE.read_text(encoding="utf-8").split())


def write_corpus_words() -> Path:
    """Rewrite :data:`WORDS_FILE` from the corpus (after a change to a domain's templates, values or captions)."""
    WORDS_FILE.write_text("\n".join(sorted(compute_corpus_words())) + "\n", encoding="utf-8")
    return WORDS_FILE


def compute_corpus_words() -> frozenset[str]:
    """Every word of the corpus's training text: the train-pool templates and synonyms, the caption verbs,
    every domain's captions (one spec per composition, at its shortest and longest lengths), its attribute
    values and domain phrases, and the step-count prefix."""
    import numpy as np

    from procseq.data.synthetic import REGISTRY
    from procseq.data.synthetic.base import frame_stages, merge_captions
    from procseq.data.synthetic.phrasing import pool_words
    from procseq.domain_prompt import DOMAIN_PHRASES
    from procseq.planning.writer import scalars

    texts = [" ".join(pool_words("train")), " ".join(DOMAIN_PHRASES.values()), " ".join(REGISTRY),
             "process in steps " + " ".join(str(i) for i in range(10))]
    for name, d in REGISTRY.items():
        for k, composition in enumerate(d.compositions()):
            rng = np.random.default_rng(k)
            for n in {d.lengths[0], d.lengths[-1], d.num_frames}:
                stages = d.num_stages(n)
                attrs = d.make_attributes(rng, composition.split("+"), stages)
                prompt, caps = d.describe(attrs, stages)
                texts += [prompt, *merge_captions(caps, frame_stages(stages, n))]
                texts += [str(v) for v in scalars(attrs).values()]
    return frozenset(w for t in texts for w in _LETTERS.findall(t.lower().replace("_", " ")))


def tokenizer_words(tokenizer: Any) -> frozenset[str]:
    """The whole words of a CLIP-style BPE tokenizer's vocabulary (entries ending in ``</w>``)."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    return frozenset(k[:-4] for k in vocab if k.endswith("</w>"))


def unknown_words(text: str, known: Iterable[str] | None = None) -> list[str]:
    """The words of `text` (letters only, in order, once each) outside `known` (default :func:`corpus_words`);
    a word whose plural or singular is known counts as known."""
    vocab = corpus_words() if known is None else frozenset(known)
    out: list[str] = []
    for word in _LETTERS.findall(text.lower()):
        stem = {word, word + "s", word[:-1] if word.endswith("s") else word, word[:-2] if word.endswith("es") else word,
                word[:-3] + "y" if word.endswith("ies") else word}
        if not stem & vocab and word not in out:
            out.append(word)
    return out


def reports_unknown_words(defaults: Any) -> bool:
    """Whether a model reads only the corpus's words: its ``procseq.json`` lists the corpus domains it was trained
    on from scratch (procseq-tiny); a FLUX.1 checkpoint has no such list and real text encoders."""
    return bool(getattr(defaults, "from_config", False) and getattr(defaults, "domains", ()))


def unknown_words_line(model: str, words: list[str], domain: str) -> str:
    """The one line the CLI prints: ``procseq: procseq-tiny does not know "cake", "chocolate"; it will draw a
    cooking process from the words it knows``."""
    from procseq.domain_prompt import domain_phrase

    named = ", ".join(f'"{w}"' for w in words)
    return f"procseq: {model} does not know {named}; it will draw a {domain_phrase(domain)} process from the words it knows"


def unknown_words_note(plans: list[Any] | None, model: Any, domain: str) -> str | None:
    """The CLI's lines for the first plan: its recorded ``unknown_words`` and the colours it names that the
    domain cannot draw as asked (``not_drawn``); None when there is nothing to say."""
    from procseq.domain_prompt import domain_phrase

    meta = plans[0].meta if plans else {}
    lines = []
    if meta.get("unknown_words"):
        lines.append(unknown_words_line(Path(str(model or "procseq-tiny")).name, list(meta["unknown_words"]), domain))
    if meta.get("not_drawn"):
        named = ", ".join(f'"{w}"' for w in meta["not_drawn"])
        lines.append(f"procseq: the plan has no place for {named} in a {domain_phrase(domain)} process (not one of "
                     "its values); the captions use the domain's own")
    return "\n".join(lines) or None


__all__ = ["WORDS_FILE", "compute_corpus_words", "corpus_words", "write_corpus_words", "reports_unknown_words", "tokenizer_words", "unknown_words", "unknown_words_line", "unknown_words_note"]
