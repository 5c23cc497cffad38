"""Plans read from pictures: ReCraft and continuation captions describe the known frame (the corpus checker)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from procseq.data.synthetic.base import domains_with_role, generate
from procseq.planning import corpus_plan
from procseq.planning.parser import SLOT_KEYS, prompt_values
from procseq.planning.reader import picture_planner, read_attributes


@pytest.mark.parametrize("domain", domains_with_role("base"))
def test_final_frame_is_read_back_into_the_spec(domain: str) -> None:
    for seed in range(3):
        spec, frames = generate(domain, seed, split="test-compositional")
        read = read_attributes(domain, Image.fromarray(frames[-1]), spec.num_frames - 1, spec.num_frames)
        truth = prompt_values(domain, spec.attributes)
        shown = {k for ks in SLOT_KEYS[domain].values() for k in ks} - ({"food", "count"} if domain == "cooking"
                                                                         else set())
        assert {k: read.get(k) for k in shown} == {k: truth[k] for k in shown}
        plan = picture_planner(frames[-1], domain, spec.num_frames - 1, spec.num_frames, corpus_plan)(
            "", domain, spec.num_frames)
        if domain != "cooking":  # a plated dish shows its cooked colour, not which food or how many pieces
            assert plan.captions == spec.captions and plan.source == "picture"


def test_first_frame_reads_what_it_shows_and_a_prompt_wins() -> None:
    spec, frames = generate("painting", 4, split="test-compositional")
    read = read_attributes("painting", frames[0], 0, spec.num_frames)  # the pencil outline only: no colours yet
    assert read == {"shape": spec.attributes["shape"], "position": spec.attributes["position"]}
    plan = picture_planner(frames[0], "painting", 0, 9, corpus_plan, asked={"color": "pink"})("", "painting", 9)
    assert plan.meta["asked"]["color"] == "pink" and "pink" in plan.captions[2]


def test_unreadable_picture_falls_back_with_a_note() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (80, 60, 3)).astype(np.uint8)
    assert read_attributes("painting", noise, 8, 9) is None
    plan = picture_planner(noise, "painting", 8, 9, corpus_plan)("a painting", "painting", 9)
    assert plan.source == "corpus" and "cannot be read" in plan.meta["note"] and "\n" not in plan.meta["note"]


def test_recraft_pipeline_captions_describe_the_picture(tiny_pipe) -> None:
    from procseq.pipelines.image_to_sequence import ImageToSequencePipeline

    pipe = ImageToSequencePipeline.from_process_pipeline(tiny_pipe)
    spec, frames = generate("painting", 1, split="test-compositional")
    out = pipe(Image.fromarray(frames[-1]), domain="painting", frames=4, num_inference_steps=1,
               generator=torch.Generator().manual_seed(0))
    a = spec.attributes
    assert out.plans[0].meta["read_from_picture"]["color"] == a["color"]
    assert f"fill the {a['shape']} with flat {a['color']} paint" in " ".join(out.captions[0])
    cont = pipe.continue_sequence([Image.fromarray(frames[0])], "a red star", domain="painting", frames=4,
                                  num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert cont.plans[0].meta["asked"]["shape"] == "star"  # the prompt's value wins over the picture's
