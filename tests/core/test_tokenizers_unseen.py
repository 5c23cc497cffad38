"""Tokenizers on words they never saw: CLIP's byte-level BPE and T5's Unigram never fall back to unknown
for ASCII words; T5 (no byte fallback) does for characters outside its alphabet (recorded here)."""

from __future__ import annotations

import numpy as np

from procseq.data.synthetic import generate
from procseq.data.synthetic.phrasing import CAPTION_VERBS, SYNONYMS, phrase_prompt
from procseq.domain_prompt import with_domain
from procseq.models.tiny import build_clip_tokenizer, build_t5_tokenizer
from procseq.training.config import RunConfig

UNSEEN = [w for g in SYNONYMS.values() for w in g[1]] + [w for g in CAPTION_VERBS.values() for w in g[1]]


def _texts() -> list[str]:
    rng = np.random.default_rng(0)
    out = []
    for name in ("painting", "lego", "emoji", "cooking"):
        for seed in range(20):
            spec, _ = generate(name, seed)
            out += [phrase_prompt(name, spec.attributes, "train", rng)[0], *spec.captions]
    return out


def test_unseen_words_never_become_unknown() -> None:
    texts = _texts()
    clip, t5 = build_clip_tokenizer(texts, 1024, 64), build_t5_tokenizer(texts, 1024, 64)
    for word in UNSEEN + ["crimson", "snowy", "zebra-striped"]:
        assert t5.unk_token_id not in t5(word).input_ids, word
        inner = clip(word).input_ids[1:-1]  # CLIP's unk is <|endoftext|>, the closing token
        assert inner and clip.unk_token_id not in inner and clip.decode(inner).replace(" ", "") == word.replace(" ", "")
    # byte-level BPE covers any text; the T5 Unigram's fallback pieces are ASCII and the corpus characters only
    assert clip.unk_token_id not in clip("café 🙂").input_ids[1:-1]
    assert t5.unk_token_id in t5("café 🙂").input_ids


def test_v2_preset_fits_paraphrases_untruncated() -> None:
    cfg = RunConfig.from_yaml("tiny-v2")
    t5_len, clip_len = cfg.model.tiny["t5_max_length"], cfg.model.tiny["clip_max_length"]
    texts = _texts()
    clip, t5 = build_clip_tokenizer(texts, 1024, clip_len), build_t5_tokenizer(texts, 1024, t5_len)
    rng = np.random.default_rng(1)
    for name in ("painting", "lego", "emoji", "cooking"):
        spec, _ = generate(name, 99, num_frames=None)
        prompt = with_domain(phrase_prompt(name, spec.attributes, "test", rng)[0], name)
        assert len(t5(prompt).input_ids) <= t5_len and len(clip(prompt).input_ids) <= clip_len
