"""The step-wise regional mask blocks what it must: perturbing a blocked token changes nothing it blocks."""

from __future__ import annotations

import copy

import pytest
import torch

from procseq.attention.masks import RegionLayout, RegionMask, additive_mask, region_mask
from procseq.attention.processors import install_processors, run_condition_pass
from procseq.attention.rope import flexible_position_ids

PLAN, STEP, FRAMES, SIDE = 5, 2, 3, 2  # plan tokens, tokens per step text, frames, tokens per frame side
SPANS = [(PLAN + k * STEP, PLAN + (k + 1) * STEP) for k in range(FRAMES)]
TEXT = PLAN + FRAMES * STEP


def layout() -> RegionLayout:
    return RegionLayout.consecutive(TEXT, SPANS, SIDE * SIDE)


def test_mask_entries() -> None:
    m = region_mask(layout())
    n = TEXT + FRAMES * SIDE * SIDE
    assert m.shape == (n, n) and m.dtype == torch.bool
    region = [TEXT + k * 4 for k in range(FRAMES)]
    assert m[region[0], 0] and m[region[0], SPANS[0][0]] and m[region[0], region[0] + 3]  # plan, own text, own frame
    assert not m[region[0], SPANS[1][0]] and not m[region[0], region[1]]  # other step's text and frame
    assert not m[SPANS[2][0], region[1]] and m[SPANS[2][0], region[2]]
    assert m[0, :PLAN].all() and not m[0, PLAN:].any()  # the plan text reads only itself
    neg = region_mask(layout(), text_tokens=4, extra_keys=3)  # a CFG branch of 4 text tokens, 3 known keys
    assert neg.shape == (4 + 12, 4 + 12 + 3)
    assert neg[4:, :4].all() and neg[:, -3:].all() and not neg[4, 4 + 4]
    add = additive_mask(m)
    assert torch.equal(add == 0, m) and torch.isinf(add[~m]).all()
    with pytest.raises(ValueError, match="one caption per frame"):
        RegionLayout(TEXT, tuple(SPANS[:2]), layout().regions)


def forward(transformer, x, text, kwargs):
    g = torch.Generator().manual_seed(1)
    pooled = torch.randn(1, transformer.config.pooled_projection_dim, generator=g)
    return transformer(hidden_states=x, timestep=torch.tensor([0.6]), pooled_projections=pooled,
                       encoder_hidden_states=text, txt_ids=torch.zeros(text.shape[1], 3),
                       img_ids=flexible_position_ids(FRAMES, SIDE), joint_attention_kwargs=kwargs, return_dict=False)[0]


@pytest.fixture()
def setup(tiny_pipe):
    transformer = copy.deepcopy(tiny_pipe.transformer)
    install_processors(transformer)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, FRAMES * SIDE * SIDE, transformer.config.in_channels, generator=g)
    text = torch.randn(1, TEXT, transformer.config.joint_attention_dim, generator=g)
    return transformer, x, text


def frames_of(out: torch.Tensor) -> list[torch.Tensor]:
    return list(out[0].reshape(FRAMES, SIDE * SIDE, -1))


@torch.no_grad()
def test_perturbing_a_blocked_token_changes_nothing_it_blocks(setup) -> None:
    transformer, x, text = setup
    mask = RegionMask(layout())
    base = frames_of(forward(transformer, x, text, mask.attention_kwargs(0.0)))
    other_text = text.clone()
    other_text[:, SPANS[1][0]:SPANS[1][1]] += 3.0  # step 1's caption
    other_frame = x.clone()
    other_frame[:, 4:8] += 3.0  # frame 1's tokens
    for a, b in ((x, other_text), (other_frame, text)):
        out = frames_of(forward(transformer, a, b, mask.attention_kwargs(0.0)))
        assert torch.equal(out[0], base[0]) and torch.equal(out[2], base[2])  # blocked: unchanged
        assert not torch.allclose(out[1], base[1])  # frame 1 itself is driven by them
    # Without the mask, or with a global blend, the other frames do read them.
    plain = frames_of(forward(transformer, x, text, None))
    assert not torch.allclose(frames_of(forward(transformer, x, other_text, None))[0], plain[0])
    blended = frames_of(forward(transformer, x, text, mask.attention_kwargs(0.1)))
    assert not torch.allclose(frames_of(forward(transformer, x, other_text, mask.attention_kwargs(0.1)))[0], blended[0])
    # a = 1 is the global pass alone: the unmasked output.
    full = forward(transformer, x, text, mask.attention_kwargs(1.0))
    assert torch.allclose(full, forward(transformer, x, text, None), atol=1e-5)


@torch.no_grad()
def test_known_frame_keys_are_read_through_the_mask(setup) -> None:
    transformer, x, text = setup
    g = torch.Generator().manual_seed(2)
    cond = torch.randn(1, 4, transformer.config.in_channels, generator=g)
    pooled = torch.randn(1, transformer.config.pooled_projection_dim, generator=g)
    kv = run_condition_pass(transformer, cond, flexible_position_ids(FRAMES, SIDE)[:4], pooled)
    mask = RegionMask(layout())
    with_known = forward(transformer, x, text, {**mask.attention_kwargs(0.0), **kv.attention_kwargs("use")})
    without = forward(transformer, x, text, mask.attention_kwargs(0.0))
    assert with_known.shape == without.shape and not torch.allclose(with_known, without)
    with pytest.raises(ValueError, match="between 0 and 1"):
        mask.attention_kwargs(1.5)


@pytest.mark.parametrize("text_tokens,extra", [(None, 0), (None, 6), (9, 0), (9, 4)])
def test_group_by_group_attention_equals_the_dense_mask(text_tokens, extra: int) -> None:
    """The regional pass computed per step group gives what one dense masked attention gives (conditional branch,
    a negative branch with its own text length, known-frame keys appended)."""
    from procseq.attention.masks import RegionLayout, RegionMask
    from procseq.attention.processors import ProcseqAttnProcessor

    layout = RegionLayout.consecutive(14, [(3, 5), (5, 9), (9, 10), (12, 14)], tokens_per_frame=4)
    mask = RegionMask(layout)
    t = layout.text_tokens if text_tokens is None else text_tokens
    g = torch.Generator().manual_seed(0)
    lq = t + layout.image_tokens
    q = torch.randn(2, lq, 2, 8, generator=g)
    k, v = (torch.randn(2, lq + extra, 2, 8, generator=g) for _ in range(2))
    proc = ProcseqAttnProcessor("x")
    dense = proc.attend(q, k, v, mask.for_attention(lq, lq + extra, q.device))
    grouped = proc.attend_groups(q, k, v, mask.groups(lq, lq + extra, q.device))
    assert torch.allclose(dense, grouped, atol=1e-5)
