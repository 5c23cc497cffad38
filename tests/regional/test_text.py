"""Per-step text: spans of the concatenated captions, the whole-plan encoding, and the fusion formula."""

from __future__ import annotations

import pytest
import torch

from procseq.conditioning.text import encode_steps, fuse_steps, join_text

CAPTIONS = ["sketch the outline", "block in flat colour", "add shading"]


def test_fusion_follows_its_formula() -> None:
    g = torch.Generator().manual_seed(0)
    steps, whole = torch.randn(2, 9, 4, generator=g), torch.randn(2, 12, 4, generator=g)
    spans, whole_spans = [(0, 3), (3, 5), (5, 9)], [(1, 4), (6, 8), (8, 12)]
    out = fuse_steps(steps, whole, spans, whole_spans, 0.2)
    for (s, e), (ws, we) in zip(spans, whole_spans):
        assert torch.allclose(out[:, s:e], steps[:, s:e] + 0.2 * whole[:, ws:we])
    assert torch.equal(fuse_steps(steps, whole, spans, whole_spans, 0.0), steps)
    with pytest.raises(ValueError, match="differ in length"):
        fuse_steps(steps, whole, [(0, 3)], [(0, 2)], 0.2)


def test_steps_encoded_alone_and_together(tiny_pipe) -> None:
    text = encode_steps(tiny_pipe, CAPTIONS, 16, whole=True)
    assert text.num_steps == 3
    assert text.spans[0][0] == 0 and text.spans[-1][1] == text.num_tokens
    assert all(a[1] == b[0] for a, b in zip(text.spans, text.spans[1:]))  # contiguous, no padding
    alone = encode_steps(tiny_pipe, CAPTIONS[1:2], 16)
    s, e = text.spans[1]
    assert torch.allclose(text.embeds[:, s:e], alone.embeds, atol=1e-6)  # each caption encoded alone
    assert text.whole is not None and text.whole.shape == text.embeds.shape
    assert not torch.allclose(text.whole, text.embeds)  # the whole plan is context for every step
    fused = text.fused(0.2)
    assert torch.allclose(fused.embeds, text.embeds + 0.2 * text.whole)
    with pytest.raises(ValueError, match="whole-plan"):
        alone.fused(0.2)


def test_join_text_puts_the_plan_first(tiny_pipe) -> None:
    text = encode_steps(tiny_pipe, CAPTIONS, 16)
    plan = torch.randn(2, 5, text.embeds.shape[-1])
    embeds, ids, spans = join_text(plan, text)
    assert embeds.shape == (2, 5 + text.num_tokens, plan.shape[-1]) and ids.shape == (embeds.shape[1], 3)
    assert torch.equal(embeds[:, :5], plan)
    assert spans[0][0] == 5 and spans[-1][1] == embeds.shape[1]
