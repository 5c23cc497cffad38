"""Asymmetric LoRA and the shared routing machinery on a micro Flux transformer."""

from __future__ import annotations

import pytest
import torch

from procseq.adapters import (
    AsymmetricLoRAConfig, AsymmetricLoRALinear, adapter_layers, add_asymmetric_lora, add_domain, clear_routing,
    disable, disabled, domains, enable, remove_adapters, resolve_routing, route, set_routing,
    trainable_parameters,
)
from tests.adapters.micro import flux_inputs, micro_transformer, randomize_adapters

CFG = AsymmetricLoRAConfig(rank=4, alpha=8)


def run(model, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(**flux_inputs(**kw))[0]


def test_default_targets_cover_both_block_kinds(transformer) -> None:
    paths = add_asymmetric_lora(transformer, ["lego", "clay"], CFG)
    assert "transformer_blocks.0.attn.to_out.0" in paths and "transformer_blocks.0.attn.to_add_out" in paths
    assert {"single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.proj_out",
            "single_transformer_blocks.0.attn.to_q"} <= set(paths)
    assert "proj_out" not in paths and len(paths) == 13  # 8 double-block + 5 single-block layers
    assert domains(transformer) == ["lego", "clay"]
    assert all(not p.requires_grad for n, p in transformer.named_parameters() if "lora_" not in n)


def test_zero_initialised_b_gives_base_output(transformer) -> None:
    base = run(transformer)
    add_asymmetric_lora(transformer, ["lego", "clay"], CFG)
    with route(transformer, weights={"lego": 0.5, "clay": 0.5}):
        assert torch.equal(run(transformer), base)


def test_disabled_and_unrouted_reproduce_the_base_exactly(transformer) -> None:
    base = run(transformer)
    add_asymmetric_lora(transformer, ["lego", "clay"], CFG)
    randomize_adapters(transformer)
    assert torch.equal(run(transformer), base)  # no routing set: adapters add nothing
    set_routing(transformer, domains="lego")
    assert not torch.allclose(run(transformer), base, atol=1e-3)
    with disabled(transformer):
        assert torch.equal(run(transformer), base)
    assert not torch.allclose(run(transformer), base, atol=1e-3)  # restored
    disable(transformer)
    assert torch.equal(run(transformer), base)
    enable(transformer)
    clear_routing(transformer)
    assert torch.equal(run(transformer), base)


@pytest.mark.parametrize("per_sample", ["names", "tensor", "mappings"])
def test_per_sample_routing_equals_each_domain_alone(transformer, per_sample: str) -> None:
    add_asymmetric_lora(transformer, ["lego", "clay", "paint"], CFG)
    randomize_adapters(transformer)
    alone = {}
    for d in ["lego", "clay", "paint"]:
        with route(transformer, domains=d):
            alone[d] = run(transformer, batch=3)
    spec = {"names": dict(domains=["clay", "lego", "paint"]),
            "tensor": dict(weights=torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])),
            "mappings": dict(weights=[{"clay": 1.0}, {"lego": 1.0}, {"paint": 1.0}])}[per_sample]
    with route(transformer, **spec):
        mixed = run(transformer, batch=3)
    for i, d in enumerate(["clay", "lego", "paint"]):
        torch.testing.assert_close(mixed[i], alone[d][i], atol=1e-5, rtol=1e-5)


def test_remove_adapters_restores_plain_linears(transformer) -> None:
    base = run(transformer)
    paths = add_asymmetric_lora(transformer, ["lego"], CFG)
    randomize_adapters(transformer)
    set_routing(transformer, domains="lego")
    assert remove_adapters(transformer) == paths and not adapter_layers(transformer)
    assert type(transformer.transformer_blocks[0].attn.to_out[0]) is torch.nn.Linear
    assert torch.equal(run(transformer), base)


def test_half_precision_base_gets_float32_adapters() -> None:
    layer = AsymmetricLoRALinear(torch.nn.Linear(8, 6).to(torch.bfloat16), rank=2, domains=["lego"])
    assert layer.lora_A.weight.dtype == torch.float32 and layer.lora_B["lego"].weight.dtype == torch.float32
    layer.set_routing(resolve_routing(["lego"], domains="lego"))
    assert layer(torch.randn(2, 3, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_mix_weights_are_linear_per_layer() -> None:
    base = torch.nn.Linear(12, 10)
    layer = AsymmetricLoRALinear(base, rank=3, alpha=6, domains=["lego", "clay"])
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.weight.normal_()
    x = torch.randn(2, 5, 12)

    def delta(w: dict[str, float]) -> torch.Tensor:
        layer.set_routing(resolve_routing(layer.domain_names, weights=w))
        return layer(x) - base(x)

    mix = delta({"lego": 0.7, "clay": 0.3})
    torch.testing.assert_close(mix, 0.7 * delta({"lego": 1.0}) + 0.3 * delta({"clay": 1.0}), atol=1e-5, rtol=1e-5)
    expected = (x @ layer.lora_A.weight.T) @ (0.7 * layer.lora_B["lego"].weight + 0.3 * layer.lora_B["clay"].weight).T
    torch.testing.assert_close(mix, expected * 2.0, atol=1e-5, rtol=1e-5)


def test_trainable_parameters_are_a_plus_present_domains(transformer) -> None:
    add_asymmetric_lora(transformer, ["lego", "clay", "paint"], CFG)
    randomize_adapters(transformer)
    params = trainable_parameters(transformer, ["lego", "clay"])
    layers = adapter_layers(transformer)
    assert len(params) == 3 * len(layers)
    with route(transformer, domains=["lego", "clay"]):
        transformer(**flux_inputs())[0].square().mean().backward()
    for layer in layers.values():
        assert layer.lora_A.weight.grad is not None and layer.lora_B["lego"].weight.grad is not None
        assert layer.lora_B["paint"].weight.grad is None and not layer.lora_B["paint"].weight.requires_grad
        assert layer.base.weight.grad is None


def test_add_domain_starts_at_the_base_and_route_restores(transformer) -> None:
    base = run(transformer)
    add_asymmetric_lora(transformer, ["lego"], CFG)
    randomize_adapters(transformer)
    add_domain(transformer, "clay")
    assert domains(transformer) == ["lego", "clay"]
    with route(transformer, domains="lego"):
        lego = run(transformer)
        with route(transformer, domains="clay"):
            assert torch.equal(run(transformer), base)
        assert torch.equal(run(transformer), lego)


def test_composes_with_a_peft_style_lora(transformer) -> None:
    add_asymmetric_lora(transformer, ["lego"], CFG)
    randomize_adapters(transformer)
    with route(transformer, domains="lego"):
        ours = run(transformer)
    g = torch.Generator().manual_seed(5)
    style = {}
    for name in ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.ff.net.0.proj"]:  # shared + other module
        m = transformer.get_submodule(name)
        style[f"transformer.{name}.lora_A.weight"] = torch.randn(2, m.in_features, generator=g) * 0.3
        style[f"transformer.{name}.lora_B.weight"] = torch.randn(m.out_features, 2, generator=g) * 0.3
    transformer.load_lora_adapter(style, prefix="transformer", adapter_name="style")
    assert list(adapter_layers(transformer))[0] == "transformer_blocks.0.attn.to_q"  # path kept under peft
    to_q = transformer.transformer_blocks[0].attn.to_q
    x = torch.randn(2, 8, to_q.in_features)
    with route(transformer, domains="lego"), torch.no_grad():
        inner = to_q.base_layer  # our wrapper, wrapped by peft
        expected = inner(x) + x @ style["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"].T @ \
            style["transformer.transformer_blocks.0.attn.to_q.lora_B.weight"].T
        torch.testing.assert_close(to_q(x), expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(inner(x), inner.base(x), atol=1e-3)  # ours active inside
        both = run(transformer)
    style_only = run(transformer)  # unrouted: style LoRA only
    assert not torch.allclose(both, ours, atol=1e-3) and not torch.allclose(both, style_only, atol=1e-3)
    transformer.disable_lora()  # peft off, ours still routed
    with route(transformer, domains="lego"):
        torch.testing.assert_close(run(transformer), ours, atol=1e-6, rtol=1e-6)
    transformer.enable_lora()
    transformer.unload_lora()  # peft removed, ours kept
    assert isinstance(transformer.transformer_blocks[0].attn.to_q, AsymmetricLoRALinear)
    with route(transformer, domains="lego"):
        torch.testing.assert_close(run(transformer), ours, atol=1e-6, rtol=1e-6)


def test_bad_input_raises_value_error_with_the_fix(transformer) -> None:
    with pytest.raises(ValueError, match="no procseq adapters"):
        set_routing(transformer, domains="lego")
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        AsymmetricLoRAConfig(rank=0)
    with pytest.raises(ValueError, match="Invalid domain name"):
        add_asymmetric_lora(micro_transformer(), ["lego", "keys"], CFG)
    with pytest.raises(ValueError, match="No nn.Linear matched"):
        add_asymmetric_lora(micro_transformer(), ["lego"], AsymmetricLoRAConfig(rank=2, target_modules=("to_q",)))
    add_asymmetric_lora(transformer, ["lego", "clay"], CFG)
    with pytest.raises(ValueError, match="already has procseq adapters"):
        add_asymmetric_lora(transformer, ["paint"], CFG)
    with pytest.raises(ValueError, match="Unknown domain 'paint'.*add_domain"):
        set_routing(transformer, domains="paint")
    with pytest.raises(ValueError, match="sum to 1.*divide"):
        set_routing(transformer, weights={"lego": 0.7, "clay": 0.6})
    with pytest.raises(ValueError, match="non-negative"):
        set_routing(transformer, weights={"lego": 1.5, "clay": -0.5})
    with pytest.raises(ValueError, match="exactly one of"):
        set_routing(transformer)
    with pytest.raises(ValueError, match="columns"):
        set_routing(transformer, weights=torch.ones(2, 3) / 3)
    with pytest.raises(ValueError, match="needs a masked LoRA"):
        set_routing(transformer, domains="paint", unseen="shared")
    with pytest.raises(ValueError, match="already exists"):
        add_domain(transformer, "lego")
    with pytest.raises(ValueError, match="Unknown domains"):
        trainable_parameters(transformer, ["paint"])
    with route(transformer, domains=["lego", "clay", "lego"]), pytest.raises(ValueError, match="one domain per sample"):
        run(transformer, batch=2)
