"""``model.tokenizer_texts: all-domains``: tokenizers from every training domain's text (base and adapter
domains), never from the test-paraphrase pool, keep adapter-domain prompts short."""

from __future__ import annotations

import re

import numpy as np
import pytest

from procseq.data.synthetic import get_domain
from procseq.data.synthetic.phrasing import fill_template, pool_words, templates
from procseq.data.texts import domain_texts, training_domains
from procseq.domain_prompt import with_domain
from procseq.models.tiny import TinyConfig
from procseq.planning.vocabulary import corpus_words
from procseq.training import run
from procseq.training.config import RunConfig


def test_all_domain_texts_cover_adapter_domains_and_no_test_pool_word() -> None:
    texts = domain_texts()
    assert {"clay", "sand_art"} <= set(training_domains()) and "origami" not in training_domains()
    assert texts == domain_texts()  # deterministic
    words = {w for t in texts for w in re.findall(r"[a-z0-9-]+", t.lower())}
    assert {"clay", "sculpting", "grooves", "stamp", "jar", "layers", "sand"} <= words
    test_only = pool_words("test") - pool_words("train") - corpus_words()
    assert test_only and not words & test_only
    for name in ("clay", "sand_art"):  # the adapter domains' prompts, with the domain phrase and step count
        head = with_domain("x", name, 8)[:-2]
        assert any(t.startswith(head) for t in texts), head


def test_the_option_builds_tokenizers_that_keep_clay_prompts_whole(tmp_path) -> None:
    cfg = RunConfig.from_dict({"model": {"tokenizer_texts": "all-domains"},
                               "data": {"dir": str(tmp_path / "no-corpus")},
                               "train": {"output_dir": str(tmp_path / "run")}})
    clip, t5 = run.run_tokenizers(cfg, TinyConfig(clip_max_length=64, t5_max_length=64))
    rng = np.random.default_rng(0)
    spec = get_domain("clay").sample(rng, 32, "train", 9)
    for template in templates("clay", "train"):
        prompt = with_domain(fill_template("clay", template, spec.attributes, "train", rng), "clay", 9)
        words = prompt.split()
        assert len(t5(prompt).input_ids) <= len(words) + 3, prompt  # about one piece per word (v2: up to 74 tokens)
        assert len(clip(prompt).input_ids) <= 32
    with pytest.raises(ValueError, match="all-domains"):
        RunConfig.from_dict({"model": {"tokenizer_texts": "everything"}})
