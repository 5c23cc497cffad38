"""The attention processor: equal to FluxAttnProcessor without extra inputs, known K/V recorded and blocked,
the condition LoRA on the condition pass only, per-call state in joint_attention_kwargs."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

from procseq.attention.processors import (
    ConditionKV,
    ProcseqAttnProcessor,
    adapters_enabled,
    install_processors,
    run_condition_pass,
)
from procseq.attention.rope import known_position_ids
from procseq.conditioning.lora import add_condition_lora
from procseq.layout import GridLayout, grid_position_ids


def inputs(transformer, seed: int = 0, known=(3,)):
    """Main-pass inputs of a 4-frame grid (2 tokens per frame side) and clean known-frame tokens."""
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    layout = GridLayout.for_frames(4)
    img_ids = grid_position_ids(layout, 2)
    return {"x": torch.randn(1, len(img_ids), cfg.in_channels, generator=g),
            "text": torch.randn(1, 5, cfg.joint_attention_dim, generator=g),
            "pooled": torch.randn(1, cfg.pooled_projection_dim, generator=g), "img_ids": img_ids,
            "txt_ids": torch.zeros(5, 3), "cond": torch.randn(1, 4 * len(known), cfg.in_channels, generator=g),
            "cond_ids": known_position_ids(layout, 2, known)}


def main_pass(transformer, d, x=None, text=None, kwargs=None):
    return transformer(hidden_states=d["x"] if x is None else x, timestep=torch.tensor([0.7]),
                       pooled_projections=d["pooled"], encoder_hidden_states=d["text"] if text is None else text,
                       txt_ids=d["txt_ids"], img_ids=d["img_ids"], joint_attention_kwargs=kwargs, return_dict=False)[0]


@pytest.fixture()
def transformer(tiny_pipe):
    """A private copy of the micro transformer (LoRA tests must not touch the session's model)."""
    return copy.deepcopy(tiny_pipe.transformer)


@torch.no_grad()
def test_without_extra_inputs_it_is_flux_attention_bit_for_bit(transformer) -> None:
    transformer.set_attn_processor(FluxAttnProcessor())
    d = inputs(transformer)
    plain = main_pass(transformer, d)
    install_processors(transformer)
    install_processors(transformer)  # idempotent
    assert all(isinstance(p, ProcseqAttnProcessor) for p in transformer.attn_processors.values())
    assert torch.equal(main_pass(transformer, d), plain)
    assert torch.equal(main_pass(transformer, d, kwargs={}), plain)


def test_foreign_processors_are_not_replaced(transformer) -> None:
    class Other(FluxAttnProcessor):
        pass

    transformer.set_attn_processor(Other())
    with pytest.raises(ValueError, match="default Flux attention processors"):
        install_processors(transformer)


@torch.no_grad()
def test_known_kv_recorded_for_every_layer_and_blocked_from_main_tokens(transformer) -> None:
    d = inputs(transformer, known=(0, 2))
    store = run_condition_pass(transformer, d["cond"], d["cond_ids"], d["pooled"])
    assert set(store.kv) == set(transformer.attn_processors)
    recorded = {k: (a.clone(), b.clone()) for k, (a, b) in store.kv.items()}
    for key, value in store.kv.values():
        assert key.shape[1] == 8 and value.shape[1] == 8  # known tokens only: no text, no image
    base = main_pass(transformer, d, kwargs=store.attention_kwargs())
    x2, text2 = d["x"].clone(), d["text"].clone()
    x2[:, 3] += 5.0  # perturb an image token ...
    text2[:, 1] -= 5.0  # ... and a text token
    moved = main_pass(transformer, d, x=x2, text=text2, kwargs=store.attention_kwargs())
    assert not torch.allclose(base, moved)
    for k, (a, b) in store.kv.items():  # ... the known K/V (and so the known tokens) never see them
        assert torch.equal(a, recorded[k][0]) and torch.equal(b, recorded[k][1])
    again = run_condition_pass(transformer, d["cond"], d["cond_ids"], d["pooled"])
    for k, (a, b) in again.kv.items():  # the condition pass is independent of any main pass
        assert torch.equal(a, recorded[k][0]) and torch.equal(b, recorded[k][1])


@torch.no_grad()
def test_known_frames_reach_the_main_pass_and_state_is_per_call(transformer) -> None:
    d = inputs(transformer)
    a_kv = run_condition_pass(transformer, d["cond"], d["cond_ids"], d["pooled"])
    b_kv = run_condition_pass(transformer, d["cond"] + 1.0, d["cond_ids"], d["pooled"])
    a = main_pass(transformer, d, kwargs=a_kv.attention_kwargs())
    b = main_pass(transformer, d, kwargs=b_kv.attention_kwargs())
    assert not torch.allclose(a, b)
    plain = main_pass(transformer, d)
    assert not torch.allclose(a, plain)  # differs from no known frames at all
    # nothing is left behind in the processors: the next call without kwargs is plain attention again
    assert torch.equal(main_pass(transformer, d), plain)
    assert torch.equal(main_pass(transformer, d, kwargs=a_kv.attention_kwargs()), a)
    # a batch of 2 (two CFG branches) shares one condition
    both = transformer(hidden_states=d["x"].repeat(2, 1, 1), timestep=torch.tensor([0.7, 0.7]),
                       pooled_projections=d["pooled"].repeat(2, 1), encoder_hidden_states=d["text"].repeat(2, 1, 1),
                       txt_ids=d["txt_ids"], img_ids=d["img_ids"], joint_attention_kwargs=a_kv.attention_kwargs(),
                       return_dict=False)[0]
    torch.testing.assert_close(both[1:], a, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_use_without_a_recording_is_an_error(transformer) -> None:
    d = inputs(transformer)
    install_processors(transformer)
    with pytest.raises(RuntimeError, match="run the condition pass first"):
        main_pass(transformer, d, kwargs=ConditionKV().attention_kwargs())
    with pytest.raises(ValueError, match="condition_phase"):
        main_pass(transformer, d, kwargs={"condition_kv": ConditionKV(), "condition_phase": "sideways"})


def randomise_lora(transformer, std: float) -> list[torch.nn.Parameter]:
    lora = [p for n, p in transformer.named_parameters() if "lora_" in n]
    with torch.no_grad():
        for n, p in transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, std)
    for p in lora:
        p.requires_grad_(True)
    return lora


def test_lora_is_active_on_the_condition_pass_only(transformer) -> None:
    d = inputs(transformer)
    add_condition_lora(transformer, 2, 2, ["to_q", "to_k", "to_v", "proj_out"])
    lora = randomise_lora(transformer, 0.5)
    with torch.no_grad():
        without = run_condition_pass(transformer, d["cond"], d["cond_ids"], d["pooled"], lora=False)
        with_lora = run_condition_pass(transformer, d["cond"], d["cond_ids"], d["pooled"], lora=True)
        assert any(not torch.allclose(with_lora.kv[k][0], without.kv[k][0]) for k in without.kv)
        with adapters_enabled(transformer, False):
            main_off = main_pass(transformer, d, kwargs=with_lora.attention_kwargs())
        for n, p in transformer.named_parameters():
            if "lora_B" in n:
                p.zero_()
        main_zero = main_pass(transformer, d, kwargs=with_lora.attention_kwargs())
    torch.testing.assert_close(main_off, main_zero, rtol=0, atol=0)  # a zero LoRA is no LoRA
    assert all(p.requires_grad for p in lora)  # toggling keeps the LoRA trainable


def test_gradients_reach_the_condition_lora_through_the_kv(transformer) -> None:
    d = inputs(transformer)
    add_condition_lora(transformer, 2, 2, ["to_k", "to_v"])
    lora = randomise_lora(transformer, 0.1)
    store = run_condition_pass(transformer, d["cond"], d["cond_ids"], d["pooled"])
    with adapters_enabled(transformer, False):
        main_pass(transformer, d, kwargs=store.attention_kwargs()).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)


def test_toggling_the_condition_lora_leaves_a_user_lora_alone(transformer) -> None:
    """Known frames switch only the adapter "known_frames"; a user's style LoRA stays on in both passes."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

    d = inputs(transformer)
    add_condition_lora(transformer, 2, 2, ["to_q", "to_k", "to_v"])
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "proj_out"],
                                       init_lora_weights="gaussian"), adapter_name="style")
    transformer.set_adapter(["known_frames", "style"])
    lora = randomise_lora(transformer, 0.5)
    layers = [m for m in transformer.modules() if isinstance(m, BaseTunerLayer)]
    before = [list(m.active_adapters) for m in layers]
    with torch.no_grad():
        with adapters_enabled(transformer, False, names=("known_frames",)):
            assert all("style" in m.active_adapters for m in layers if "style" in m.scaling)
            assert not any("known_frames" in m.active_adapters for m in layers if "known_frames" in m.scaling)
            main_off = main_pass(transformer, d)
        assert [list(m.active_adapters) for m in layers] == before
        with adapters_enabled(transformer, False):  # everything off: the style LoRA's effect disappears too
            all_off = main_pass(transformer, d)
    assert not torch.allclose(main_off, all_off)
    assert all(p.requires_grad for p in lora)
