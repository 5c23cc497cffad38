"""Word meaning beyond the corpus's own synonym lists, from WordNet 3.0 where it is installed (optional).

WordNet ships as a Debian package (``apt-get install wordnet-base``: the Princeton database files in
``/usr/share/wordnet``; licence: the WordNet 3.0 licence, permissive, notice kept). It is not a pip dependency:
:func:`wordnet_dir` looks for the database where the package (or a WordNet install, or nltk's data) puts it,
and every caller falls back to the corpus's own word lists when it is absent (:func:`load` returns None).

The reader is a few lines over the database's own text format (``index.<pos>`` sorted lemma lines,
``data.<pos>`` synsets addressed by byte offset). :meth:`WordNet.related` is deliberately narrow: the words of
a sense's own synset, its direct hypernyms, its derived forms, and for adjectives its "similar to" cluster, so
``scarlet -> red`` and ``rhombus -> diamond`` but not ``circle -> triangle`` (siblings under "plane figure").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

POS = ("noun", "adj", "verb", "adv")
SEARCH = ("/usr/share/wordnet", "/usr/local/WordNet-3.0/dict", "/usr/local/share/wordnet",
          "~/nltk_data/corpora/wordnet", "/usr/share/nltk_data/corpora/wordnet")
"""Where the database is looked for after ``$PROCSEQ_WORDNET`` and ``$WNHOME/dict`` (Debian's wordnet-base first)."""
RELATIONS = {"@", "@i", "~", "~i", "&", "+", "\\"}
"""Pointers followed one step: hypernym, instance hypernym, hyponym, instance hyponym, similar-to (adjectives),
derivationally related form and pertainym (circular -> circle). A lexical pointer (derivation, pertainym) links
one word to one word: it is followed only from the word asked about, to its target word (dab's sense "tap, pat,
dab" derives the verb "tap, ..., pink" from "tap", not from "dab"). Measured in experiments/wordnet_recall.py."""
GENERAL = 80
"""A word related to more than this many words (coloured: 132, bright: 108, dark: 114) is too general to stand
for one value; the specific synonyms of the corpus's values have 3 to 75 (scarlet 24, rhombus 5, home 75)."""
_PTR_POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}


def wordnet_dir() -> Path | None:
    """The folder holding ``index.noun`` and ``data.noun``, or None when WordNet is not installed (or
    ``PROCSEQ_WORDNET=off``: the corpus's word lists only)."""
    if os.environ.get("PROCSEQ_WORDNET", "").lower() == "off":
        return None
    candidates = [os.environ.get("PROCSEQ_WORDNET", ""),
                  os.path.join(os.environ["WNHOME"], "dict") if os.environ.get("WNHOME") else "", *SEARCH]
    for c in candidates:
        if c and (Path(c).expanduser() / "index.noun").is_file() and (Path(c).expanduser() / "data.noun").is_file():
            return Path(c).expanduser()
    return None


@dataclass
class WordNet:
    """A read-only WordNet database folder (``index.*`` and ``data.*``)."""

    root: Path
    _index: dict[str, dict[str, list[int]]] = field(default_factory=dict, repr=False)

    def index(self, pos: str) -> dict[str, list[int]]:
        """lemma -> synset offsets of part of speech `pos` (read once)."""
        if pos not in self._index:
            table: dict[str, list[int]] = {}
            with open(self.root / f"index.{pos}", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith(" "):
                        continue  # the licence header
                    parts = line.split()
                    n_senses, n_ptrs = int(parts[2]), int(parts[3])
                    table[parts[0]] = [int(o) for o in parts[6 + n_ptrs: 6 + n_ptrs + n_senses]]
            self._index[pos] = table
        return self._index[pos]

    def synset(self, pos: str, offset: int) -> tuple[list[str], list[tuple[str, str, int, int, int]]]:
        """``(words, pointers)`` of the synset at `offset` in ``data.<pos>``; a pointer is ``(symbol, pos, offset,
        source, target)`` with the 1-based source and target word numbers of a lexical pointer (0, 0: the synsets)."""
        with open(self.root / f"data.{pos}", "rb") as f:
            f.seek(offset)
            parts = f.readline().decode("utf-8", "replace").split(" | ")[0].split()
        n_words = int(parts[3], 16)
        words = [parts[4 + 2 * i].split("(")[0].lower().replace("_", " ") for i in range(n_words)]
        at = 4 + 2 * n_words
        n_ptrs = int(parts[at])
        ptrs = [(parts[at + 1 + 4 * i], _PTR_POS[parts[at + 3 + 4 * i]], int(parts[at + 2 + 4 * i]),
                 int(parts[at + 4 + 4 * i][:2], 16), int(parts[at + 4 + 4 * i][2:], 16)) for i in range(n_ptrs)]
        return words, ptrs

    def lemmas(self, word: str) -> list[str]:
        """`word` and its base forms (plural nouns: ``-s``, ``-es``, ``-ies``), lower case, spaces as ``_``."""
        w = word.lower().strip().replace(" ", "_")
        out = [w]
        for suffix, base in (("ies", "y"), ("es", ""), ("s", "")):
            if w.endswith(suffix) and len(w) > len(suffix) + 2:
                out.append(w[: -len(suffix)] + base)
        return out

    def related(self, word: str, pos: tuple[str, ...] = POS) -> set[str]:
        """Words close in meaning to `word` in any of its senses: its synsets' words, their direct hypernyms and
        hyponyms, (adjectives) their similar-to synsets, and the words `word` itself derives from or to; lower case,
        multi-word lemmas with spaces."""
        out: set[str] = set()
        for p in pos:
            for lemma in self.lemmas(word):
                for offset in self.index(p).get(lemma, ()):
                    words, ptrs = self.synset(p, offset)
                    out.update(words)
                    own = words.index(lemma.replace("_", " ")) + 1 if lemma.replace("_", " ") in words else -1
                    for symbol, q, target, source, to in ptrs:
                        if symbol not in RELATIONS or (source and source != own):
                            continue
                        linked = self.synset(q, target)[0]
                        out.update(linked[to - 1: to] if source else linked)
        return out

    def map_to(self, word: str, values: list[str] | tuple[str, ...]) -> str | None:
        """The one value of `values` that `word` is related to as a noun or an adjective (:meth:`related`; the
        values are things and qualities: a verb sense such as bend -> bow is not followed), or None when none or
        several are, or when `word` is too general (:data:`GENERAL`): an unknown word is mapped only when its
        meaning is not in doubt."""
        if word.lower() in values:
            return word.lower()
        related = self.related(word, ("noun", "adj"))
        hits = sorted(set(values) & related)
        return hits[0] if len(hits) == 1 and len(related) <= GENERAL else None


def load() -> WordNet | None:
    """The installed WordNet, or None (the caller falls back to the corpus's word lists)."""
    root = wordnet_dir()
    return _open(root) if root else None


@lru_cache(maxsize=4)
def _open(root: Path) -> WordNet:
    return WordNet(root)


__all__ = ["GENERAL", "POS", "RELATIONS", "SEARCH", "WordNet", "load", "wordnet_dir"]
