"""Sparse history indices (Loom's formula and rotation offset) and the step embedding before x_embedder."""

from __future__ import annotations

import pytest
import torch

from procseq.conditioning.history import (
    StepEmbedding,
    added_to_input,
    history_indices,
    load_step_embedding,
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
