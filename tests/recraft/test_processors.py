"""The condition branch: cached K/V, blocked attention, LoRA on the condition pass only."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

from procseq.attention.processors import (
    ConditionCache,
    ConditionKVProcessor,
    adapters_enabled,
    condition_processors,
    run_condition_pass,
)
from procseq.attention.rope import condition_position_ids
from procseq.layout import GridLayout, grid_position_ids


def inputs(transformer, seed: int = 0):
    """Main-pass inputs of a 4-frame grid (2 tokens per frame side) and clean condition tokens."""
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    layout = GridLayout.for_frames(4)
    img_ids = grid_position_ids(layout, 2)
    x = torch.randn(1, len(img_ids), cfg.in_channels, generator=g)
    text = torch.randn(1, 5, cfg.joint_attention_dim, generator=g)
    pooled = torch.randn(1, cfg.pooled_projection_dim, generator=g)
    cond = torch.randn(1, 4, cfg.in_channels, generator=g)
    return {"x": x, "text": text, "pooled": pooled, "img_ids": img_ids, "txt_ids": torch.zeros(5, 3), "cond": cond,
                "cond_ids": condition_position_ids(layout, 2)}


def main_pass(transformer, d, x=None, text=None):
    return transformer(hidden_states=d["x"] if x is None else x, timestep=torch.tensor([0.7]),
                       pooled_projections=d["pooled"], encoder_hidden_states=d["text"] if text is None else text,
                       txt_ids=d["txt_ids"], img_ids=d["img_ids"], return_dict=False)[0]


@pytest.fixture()
def transformer(tiny_pipe):
    """A private copy of the micro transformer (LoRA tests must not touch the session's model)."""
    t = copy.deepcopy(tiny_pipe.transformer)
    before = {k: type(v) for k, v in t.attn_processors.items()}
    yield t
    assert {k: type(v) for k, v in t.attn_processors.items()} == before


@torch.no_grad()
def test_install_restores_processors_and_off_mode_is_plain_attention(transformer) -> None:
    d = inputs(transformer)
    plain = main_pass(transformer, d)
    with condition_processors(transformer) as cache:
        assert all(isinstance(p, ConditionKVProcessor) for p in transformer.attn_processors.values())
        assert cache.mode == "off"
        torch.testing.assert_close(main_pass(transformer, d), plain, rtol=0, atol=0)
    assert all(type(p) is FluxAttnProcessor for p in transformer.attn_processors.values())


@torch.no_grad()
def test_condition_kv_recorded_for_every_layer_and_blocked_from_main_tokens(transformer) -> None:
    d = inputs(transformer)
    with condition_processors(transformer) as cache:
        run_condition_pass(transformer, cache, d["cond"], d["cond_ids"], d["pooled"])
        assert set(cache.kv) == set(transformer.attn_processors)
        recorded = {k: (a.clone(), b.clone()) for k, (a, b) in cache.kv.items()}
        for key, value in cache.kv.values():
            assert key.shape[1] == 4 and value.shape[1] == 4  # condition tokens only: no text, no image
        with cache.as_mode("use"):
            base = main_pass(transformer, d)
            x2, text2 = d["x"].clone(), d["text"].clone()
            x2[:, 3] += 5.0  # perturb an image token ...
            text2[:, 1] -= 5.0  # ... and a text token
            moved = main_pass(transformer, d, x=x2, text=text2)
        assert not torch.allclose(base, moved)
        for k, (a, b) in cache.kv.items():  # ... the condition K/V (and so the condition tokens) never see them
            assert torch.equal(a, recorded[k][0]) and torch.equal(b, recorded[k][1])
        # recomputing the condition pass after the main pass gives the same K/V: it is independent of it
        run_condition_pass(transformer, cache, d["cond"], d["cond_ids"], d["pooled"])
        for k, (a, b) in cache.kv.items():
            assert torch.equal(a, recorded[k][0]) and torch.equal(b, recorded[k][1])


@torch.no_grad()
def test_condition_reaches_the_main_pass(transformer) -> None:
    d = inputs(transformer)
    with condition_processors(transformer) as cache:
        run_condition_pass(transformer, cache, d["cond"], d["cond_ids"], d["pooled"])
        with cache.as_mode("use"):
            a = main_pass(transformer, d)
        run_condition_pass(transformer, cache, d["cond"] + 1.0, d["cond_ids"], d["pooled"])
        with cache.as_mode("use"):
            b = main_pass(transformer, d)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, main_pass(transformer, d))  # differs from no condition at all


@torch.no_grad()
def test_use_mode_without_a_recording_is_an_error(transformer) -> None:
    d = inputs(transformer)
    cache = ConditionCache()
    with condition_processors(transformer, cache), cache.as_mode("use"), pytest.raises(RuntimeError, match="condition"):
        main_pass(transformer, d)


def test_lora_is_active_on_the_condition_branch_only(transformer) -> None:
    from procseq.training.config import RecraftConfig
    from procseq.training.recraft import add_recraft_lora

    d = inputs(transformer)
    add_recraft_lora(transformer, RecraftConfig(rank=2, alpha=2))
    lora = {n: p for n, p in transformer.named_parameters() if "lora_B" in n}
    with torch.no_grad():
        for p in lora.values():
            p.normal_(0, 0.5)
    for p in lora.values():
        p.requires_grad_(True)
    with torch.no_grad(), condition_processors(transformer) as cache:
        run_condition_pass(transformer, cache, d["cond"], d["cond_ids"], d["pooled"], lora=False)
        without = {k: a.clone() for k, (a, _) in cache.kv.items()}
        run_condition_pass(transformer, cache, d["cond"], d["cond_ids"], d["pooled"], lora=True)
        assert any(not torch.allclose(cache.kv[k][0], without[k]) for k in without)  # LoRA acts here
        with cache.as_mode("use"), adapters_enabled(transformer, False):
            main_off = main_pass(transformer, d)
        for p in lora.values():  # a zero LoRA is no LoRA: the main pass must not have used it
            p.zero_()
        with cache.as_mode("use"):
            main_zero = main_pass(transformer, d)
    torch.testing.assert_close(main_off, main_zero, rtol=0, atol=0)
    assert all(p.requires_grad for p in lora.values())  # toggling keeps the LoRA trainable


def test_gradients_reach_the_condition_lora_through_the_cache(transformer) -> None:
    from procseq.training.config import RecraftConfig
    from procseq.training.recraft import add_recraft_lora

    d = inputs(transformer)
    add_recraft_lora(transformer, RecraftConfig(rank=2, alpha=2, targets=["to_k", "to_v"]))
    with torch.no_grad():
        for n, p in transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    lora = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in lora:
        p.requires_grad_(True)
    with condition_processors(transformer) as cache:
        run_condition_pass(transformer, cache, d["cond"], d["cond_ids"], d["pooled"])
        with cache.as_mode("use"), adapters_enabled(transformer, False):
            main_pass(transformer, d).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
