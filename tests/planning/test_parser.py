"""The offline planner reads the prompt: parser round trips, and no caption contradicts a prompt value."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procseq.data.synthetic import REGISTRY
from procseq.data.synthetic.base import generate
from procseq.data.synthetic.phrasing import POOLS, SYNONYMS, TEMPLATES, pool_words, slots
from procseq.planning import corpus_plan, plan_instruction
from procseq.planning.parser import contradictions, lexicon_words, named_attributes, parse_prompt, prompt_values
from procseq.planning.vocabulary import corpus_words

DOMAINS = sorted(REGISTRY)


def wordings(domain: str, attrs: dict, pool: str) -> list[tuple[str, str]]:
    """Every template of `pool` filled with `attrs`, each synonym group by its first word: (prompt, template)."""
    i = POOLS.index(pool)
    out = []
    for template in TEMPLATES[domain][i]:
        text = re.sub(r"<(\w+)>", lambda m: SYNONYMS[m.group(1)][i][0], template.format(**slots(domain, attrs)))
        out.append((" ".join(text.split()), template))
    return out


@pytest.mark.parametrize("domain", DOMAINS)
def test_round_trip_every_phrasing_family(domain: str) -> None:
    """describe(spec) -> parse -> the spec's values, for the spec's own prompt and every template of both pools."""
    for seed in range(6):
        spec, _ = generate(domain, seed, split="test-compositional")
        truth = prompt_values(domain, spec.attributes)
        cases = [(spec.prompt, None)] + wordings(domain, spec.attributes, "train") + wordings(domain, spec.attributes,
                                                                                                 "test")
        for prompt, template in cases:
            got = parse_prompt(domain, prompt)
            keys = named_attributes(domain, template) if template else list(got)
            assert {k: got.get(k) for k in keys} == {k: truth[k] for k in keys}, prompt
        plan = corpus_plan(spec.prompt, domain, spec.num_frames)
        assert plan.captions == spec.captions  # every value the prompt names is in the captions, as the corpus writes


def test_readme_demo_and_issue_prompts() -> None:
    demo = corpus_plan("a painting of a red star on the left under a sunset sky above sand, with a sun", "painting", 9)
    assert demo.captions[0] == "sketch the outline of the star in pencil"
    assert "fill the star with flat red paint" in demo.captions and "wash the sunset sky" in demo.captions
    assert demo.meta["asked"] == {"color": "red", "shape": "star", "position": "left", "sky": "sunset",
                                  "ground": "sand"} and demo.meta["chosen"] == {"sun_side": demo.meta["chosen"]["sun_side"]}
    tower = plan_instruction("show how to build a blue LEGO tower")
    assert all("red" not in c for c in tower.captions) and "blue" in tower.captions[1]
    rows = corpus_plan("blue and green rows", "lego", 9)
    assert "yellow" not in " ".join(rows.captions) and {"blue", "green"} <= set(" ".join(rows.captions).split(", "))
    assert plan_instruction("build a LEGO wall of twelve bricks").num_steps == 13
    # the same prompt gives the same plan; the values it does not name are recorded as chosen
    assert corpus_plan("a cat", "pixel_art", 9).to_dict() == corpus_plan("a cat", "pixel_art", 9).to_dict()
    assert set(corpus_plan("a cat", "pixel_art", 9).meta["chosen"]) == {"color", "background"}


def test_word_lists_never_come_from_the_test_pool() -> None:
    """The test-paraphrase pool stays held out: no word only it brings is in the parser's lists."""
    test_only = pool_words("test") - pool_words("train") - corpus_words()
    assert test_only and not lexicon_words() & test_only


WORDS = sorted({*"red orange yellow green blue purple pink brown white black gray light cream".split(),
                *"circle square triangle diamond star house heart tree ghost arrow cat tower wall pyramid stairs".split(),
                *"sky ground baseplate plate background ink hatching bricks pieces rows on with and a the".split(),
                *"left center right sunset night day grass sand snow tomato carrots spinach plum hat bow scarf".split(),
                *"smiling frowning surprised round two three four eight ball cone gem boat layers cake car".split()})


@settings(max_examples=60, deadline=None)
@given(domain=st.sampled_from(DOMAINS), words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=14),
       steps=st.integers(1, 16))
def test_no_caption_contradicts_the_prompt(domain: str, words: list[str], steps: int) -> None:
    """For any wording, the plan's captions never state a value that differs from one the prompt names."""
    prompt = " ".join(words)
    plan = corpus_plan(prompt, domain, steps)
    assert plan.num_steps == steps
    assert contradictions(domain, parse_prompt(domain, prompt), plan.captions) == []


@settings(max_examples=40, deadline=None)
@given(domain=st.sampled_from(DOMAINS), seed=st.integers(0, 10_000), pool=st.sampled_from(POOLS),
       drop=st.integers(0, 6))
def test_phrasings_are_read_without_contradiction(domain: str, seed: int, pool: str, drop: int) -> None:
    """Any phrasing of any spec (some words dropped): what the parser reads is the spec's, and the captions agree."""
    spec, _ = generate(domain, seed, split="test-compositional")
    prompt, _ = wordings(domain, spec.attributes, pool)[seed % len(TEMPLATES[domain][POOLS.index(pool)])]
    words = prompt.split()
    if drop and len(words) > 2:
        del words[np.random.default_rng(seed).integers(len(words))]
    asked = parse_prompt(domain, " ".join(words))
    truth = prompt_values(domain, spec.attributes)
    if drop == 0:
        assert all(truth.get(k) == v for k, v in asked.items()), (prompt, asked)
    assert contradictions(domain, asked, corpus_plan(" ".join(words), domain, spec.num_frames).captions) == []


def test_contradictions_are_found() -> None:
    asked = parse_prompt("painting", "a red star")
    assert contradictions("painting", asked, ["fill the circle with flat blue paint"]) == [
        "shape: the captions say 'circle', the prompt 'star'", "color: the captions say 'blue', the prompt 'red'"]
    assert contradictions("lego", parse_prompt("lego", "blue and green rows"),
                          ["lay out the gray baseplate", "place the first brick, red, on the baseplate"])


def test_a_colour_the_domain_cannot_draw_is_reported_not_replaced_silently() -> None:
    from procseq.planning import corpus_plan
    from procseq.planning.vocabulary import unknown_words_note

    plan = corpus_plan("build me a little tower out of green lego bricks on a white plate", "lego", 9)
    assert plan.meta["not_drawn"] == ["white"]  # LEGO baseplates are green, gray or blue
    note = unknown_words_note([plan], "procseq-tiny", "lego")
    assert note is not None and '"white"' in note and "\n" not in note
    # colours the plan draws, synonyms and colours implied by the food are not reported
    for domain, prompt in [("lego", "a LEGO pyramid of eight bricks, blue and green rows, on a gray baseplate"),
                           ("painting", "a crimson circle in the middle"),
                           ("cooking", "three yellow cheese cooked until orange and served on a white plate")]:
        assert "not_drawn" not in corpus_plan(prompt, domain, 9).meta
