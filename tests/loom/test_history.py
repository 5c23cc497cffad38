"""Sparse history indices (Loom's formula and rotation offset) and the step embedding before x_embedder."""

from __future__ import annotations

import pytest
import torch

from procseq.conditioning.history import (
    StepEmbedding,
    added_to_input,
    history_indices,
    load_step_embedding,
    offset_bound,
    rotation_offset,
    save_step_embedding,
    select_history,
)


@pytest.mark.parametrize("t", range(0, 20))
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_history_indices_follow_the_formula(t: int, k: int) -> None:
    got = history_indices(t, k)
    want = sorted({i * t // (k + 1) for i in range(1, k + 1)}) if t else []
    assert list(got) == want
    assert all(0 <= i < t for i in got) and len(got) == min(k, t) or t < k + 1
    # the offset rotates the indices over every earlier position
    seen = set()
    for offset in range(t):
        idx = history_indices(t, k, offset)
        assert len(idx) == len(got) and all(0 <= i < t for i in idx)
        seen.update(idx)
    assert seen == set(range(t))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_rotation_offset_keeps_loom_bound(k: int) -> None:
    """Loom: 0 <= o < floor(t / (K + 1)) (o = 0 when the bound is below 1), never a wrap-around."""
    g = torch.Generator().manual_seed(0)
    assert offset_bound(30, 2) == 10 and offset_bound(2, 2) == 1 and offset_bound(0, 3) == 1
    for t in range(0, 40):
        bound = max(1, t // (k + 1))
        drawn = {rotation_offset(t, k, g) for _ in range(200)}
        assert drawn <= set(range(bound)), (t, drawn)
        if t >= 4 * (k + 1):
            assert drawn == set(range(bound))  # uniform over the whole bound: every value drawn
        for o in range(bound if t else 0):  # within the bound the shifted indices stay below t without the modulo
            assert all(i < t for i in (i * t // (k + 1) + o for i in range(1, k + 1)))
            assert len(history_indices(t, k, o)) == len(history_indices(t, k))
    assert rotation_offset(0, k, g) == 0


def test_rotation_offset_draws_once_per_frame_and_keeps_the_old_call() -> None:
    """One draw for t > 0 whatever the bound (later draws unchanged); the v2 call (t, generator) still works."""
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    rotation_offset(5, 4, a)  # bound 1: still one draw
    torch.randint(5, (1,), generator=b)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    old, ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    with pytest.warns(DeprecationWarning, match="rotation_offset"):
        got = rotation_offset(30, old)  # type: ignore[arg-type]
    assert got == int(torch.randint(30, (1,), generator=ref))
    with pytest.raises(TypeError):
        rotation_offset(3, 2)


def test_history_edge_cases_and_kinds() -> None:
    assert history_indices(0, 4) == () and history_indices(5, 0) == ()
    assert history_indices(1, 2) == (0,)  # floor(1/3) = floor(2/3) = 0, kept once
    assert history_indices(15, 2) == (5, 10)
    assert select_history(6, "previous") == (5,) and select_history(3, "all") == (0, 1, 2)
    assert select_history(3, "none") == () and select_history(9, "sparse", 4) == history_indices(9, 4)
    with pytest.raises(ValueError, match="Unknown history"):
        select_history(3, "random")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        history_indices(-1, 2)


def test_step_embedding_interpolates_and_round_trips(tmp_path) -> None:
    emb = StepEmbedding(4, num_positions=3)
    with torch.no_grad():
        emb.table.copy_(torch.tensor([[0.0] * 4, [1.0] * 4, [3.0] * 4]))
    assert torch.allclose(emb(torch.tensor([0.0, 0.25, 0.5, 1.0]))[:, 0], torch.tensor([0.0, 0.5, 1.0, 3.0]))
    assert emb.for_frames([0, 4], num_frames=5, tokens_per_frame=2)[:, 0].tolist() == [0.0, 0.0, 3.0, 3.0]
    back = load_step_embedding(save_step_embedding(emb, tmp_path / "e.safetensors"))
    assert torch.equal(back.table, emb.table)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        load_step_embedding(tmp_path / "bad.safetensors")


def test_step_embedding_reaches_the_tokens_before_x_embedder(tiny_pipe) -> None:
    tr = tiny_pipe.transformer
    c = tr.config.in_channels
    x = torch.randn(1, 4, c)
    seen = []
    handle = tr.x_embedder.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    kwargs = dict(timestep=torch.tensor([0.5]), pooled_projections=torch.randn(1, tr.config.pooled_projection_dim),
                  encoder_hidden_states=torch.randn(1, 3, tr.config.joint_attention_dim), txt_ids=torch.zeros(3, 3),
                  img_ids=torch.zeros(4, 3), return_dict=False)
    try:
        with torch.no_grad():
            base = tr(hidden_states=x, **kwargs)[0]
            add = torch.randn(4, c)
            with added_to_input(tr, add):
                moved = tr(hidden_states=x, **kwargs)[0]
            after = tr(hidden_states=x, **kwargs)[0]
    finally:
        handle.remove()
    assert torch.allclose(seen[1], x + add) and torch.equal(seen[2], x)  # added while open, gone after
    assert not torch.allclose(base, moved) and torch.equal(base, after)
    with pytest.raises(ValueError, match="covers 3 tokens"), added_to_input(tr, torch.zeros(3, c)), torch.no_grad():
        tr(hidden_states=x, **kwargs)
