"""Representation alignment: block choice, exact zero for zero adapters, teacher pass with adapters off."""

from __future__ import annotations

import pytest
import torch

from procseq.adapters import (
    AsymmetricLoRAConfig, MaskedLoRAConfig, adapter_layers, add_asymmetric_lora, add_masked_lora, route,
    trainable_parameters,
)
from procseq.training.alignment import (
    AlignmentConfig, RepresentationAlignment, alignment_blocks, alignment_distance, capture_hidden_states, time_weight,
)
from tests.adapters.micro import flux_inputs, micro_transformer, randomize_adapters


def test_blocks_are_flux_reference_at_flux_depth_and_scaled_otherwise() -> None:
    assert alignment_blocks(19, 38) == ["transformer_blocks.4", "transformer_blocks.9", "transformer_blocks.14",
                                        "single_transformer_blocks.0", "single_transformer_blocks.10"]
    assert alignment_blocks(1, 1) == ["transformer_blocks.0", "single_transformer_blocks.0"]
    assert alignment_blocks(4, 8) == ["transformer_blocks.1", "transformer_blocks.2", "transformer_blocks.3",
                                      "single_transformer_blocks.0", "single_transformer_blocks.2"]
    assert alignment_blocks(2, 0) == ["transformer_blocks.0", "transformer_blocks.1"]
    with pytest.raises(ValueError, match="needs blocks"):
        alignment_blocks(0, 0)


def test_time_weight_and_distance() -> None:
    t = torch.tensor([0.0, 0.25, 1.0])
    assert torch.allclose(time_weight(t, AlignmentConfig()), torch.tensor([0.5, 0.375, 0.0]))
    assert torch.allclose(time_weight(t, AlignmentConfig(lambda0=2.0, schedule="t")), 2 * t)
    assert torch.allclose(time_weight(t, AlignmentConfig(schedule=lambda s: s**2)), 0.5 * t**2)
    a = torch.randn(2, 5, 8)
    assert torch.equal(alignment_distance(a, a.clone(), 0.1), torch.zeros(2))
    b = -a  # cos = -1, so 1 - cos = 2 on every token; MSE = mean((2a)^2)
    expected = 2 + 0.1 * (2 * a).pow(2).mean(-1).mean(-1)
    torch.testing.assert_close(alignment_distance(a, b, 0.1), expected)
    with pytest.raises(ValueError, match="schedule"):
        AlignmentConfig(schedule="cosine")


@pytest.mark.parametrize("kind", ["asymmetric", "masked"])
def test_loss_is_exactly_zero_for_zero_adapters_and_positive_otherwise(kind: str) -> None:
    model = micro_transformer()
    if kind == "asymmetric":
        add_asymmetric_lora(model, ["lego", "clay"], AsymmetricLoRAConfig(rank=4))
    else:
        add_masked_lora(model, ["lego", "clay"], MaskedLoRAConfig(rank=10))
    align = RepresentationAlignment(model)
    assert align.blocks == ["transformer_blocks.0", "single_transformer_blocks.0"]
    inputs, t = flux_inputs(), torch.tensor([0.2, 0.6])
    with route(model, domains=["lego", "clay"]):
        out = align(t, **inputs)
    assert out.loss.item() == 0.0 and all(v.eq(0).all() for v in out.per_block.values())
    randomize_adapters(model)
    params = trainable_parameters(model, ["lego", "clay"])
    with route(model, domains=["lego", "clay"]):
        out = align(t, **inputs)
    assert out.loss.item() > 0 and out.output[0].shape == inputs["hidden_states"].shape
    torch.testing.assert_close(out.weight, 0.5 * (1 - t))
    out.loss.backward()
    assert all(p.grad is not None for p in params)
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


def test_teacher_pass_runs_without_adapters_and_restores_them() -> None:
    model = micro_transformer()
    add_asymmetric_lora(model, ["lego"], AsymmetricLoRAConfig(rank=4))
    randomize_adapters(model)
    layers = list(adapter_layers(model).values())
    seen: list[tuple[bool, bool]] = []  # (any adapter enabled, grad enabled) per forward of block 0
    model.transformer_blocks[0].register_forward_hook(
        lambda *_: seen.append((any(layer.enabled for layer in layers), torch.is_grad_enabled())))
    align = RepresentationAlignment(model, AlignmentConfig(blocks=["single_transformer_blocks.0"]))
    inputs = flux_inputs()
    with route(model, domains="lego"):
        out = align(torch.tensor([0.1, 0.9]), **inputs)
        teacher = align.teacher_states(**inputs)
    assert seen == [(True, True), (False, False), (False, False)]  # student, teacher, teacher
    assert all(layer.enabled for layer in layers) and out.loss.item() > 0
    base = micro_transformer()  # the same base weights, never adapted: teacher states are its states
    with torch.no_grad(), capture_hidden_states(base, ["single_transformer_blocks.0"]) as states:
        base(**inputs)
    assert torch.equal(teacher["single_transformer_blocks.0"], states["single_transformer_blocks.0"])
    assert not teacher["single_transformer_blocks.0"].requires_grad
    with pytest.raises(ValueError, match="No block"):
        RepresentationAlignment(model, AlignmentConfig(blocks=["transformer_blocks.7"])).teacher_states(**inputs)
