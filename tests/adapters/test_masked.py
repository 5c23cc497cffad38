"""Masked LoRA: row layout, gradient privacy, unseen domains, routing."""

from __future__ import annotations

import pytest
import torch

from procseq.adapters import (
    MaskedLoRAConfig, MaskedLoRALinear, adapter_layers, add_domain, add_masked_lora, disabled, resolve_routing,
    route, trainable_parameters,
)
from tests.adapters.micro import flux_inputs, randomize_adapters

CFG = MaskedLoRAConfig(rank=10, alpha=10, domain_fraction=0.3)


def run(model, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(**flux_inputs(**kw))[0]


def test_layout_blocks_are_disjoint_and_about_thirty_percent() -> None:
    layer = MaskedLoRALinear(torch.nn.Linear(8, 6), rank=16, domains=["a", "b", "c"])
    assert (layer.shared_rows, layer.block) == (13, 1)  # round(0.3 * 16) = 5 -> 3 blocks of 1, 13 shared
    layer = MaskedLoRALinear(torch.nn.Linear(8, 6), rank=20, max_domains=2, domains=["a", "b"])
    assert (layer.shared_rows, layer.block) == (14, 3)
    assert layer.domain_rows("a") == slice(14, 17) and layer.domain_rows("b") == slice(17, 20)
    coef = layer.row_coefficients(torch.tensor([[0.25, 0.75]]))
    assert coef[0, :14].eq(1).all() and coef[0, 14:17].eq(0.25).all() and coef[0, 17:].eq(0.75).all()


def test_gradients_of_a_domain_stay_in_shared_and_own_rows(transformer) -> None:
    add_masked_lora(transformer, ["lego", "clay"], CFG)
    randomize_adapters(transformer)
    trainable_parameters(transformer, ["lego", "clay"])
    layers = adapter_layers(transformer)
    grads = {}
    for d in ["lego", "clay"]:
        transformer.zero_grad()
        with route(transformer, domains=d):
            transformer(**flux_inputs())[0].square().mean().backward()
        grads[d] = {n: (l.lora_A.weight.grad.clone(), l.lora_B.weight.grad.clone()) for n, l in layers.items()}
    for name, layer in layers.items():
        shared = slice(0, layer.shared_rows)
        for d, other in [("lego", "clay"), ("clay", "lego")]:
            ga, gb = grads[d][name]
            assert ga[layer.domain_rows(other)].eq(0).all() and gb[:, layer.domain_rows(other)].eq(0).all()
            assert ga[shared].abs().sum() > 0 and gb[:, shared].abs().sum() > 0  # shared rows learn from d
            assert gb[:, layer.domain_rows(d)].abs().sum() > 0


def test_per_sample_masks_keep_samples_private(transformer) -> None:
    add_masked_lora(transformer, ["lego", "clay"], CFG)
    randomize_adapters(transformer)
    trainable_parameters(transformer, ["lego", "clay"])
    x = flux_inputs(batch=2)
    with route(transformer, domains=["lego", "clay"]):
        transformer(**x)[0][0].square().mean().backward()  # loss on the lego sample only
    for layer in adapter_layers(transformer).values():
        assert layer.lora_B.weight.grad[:, layer.domain_rows("clay")].eq(0).all()


def test_per_sample_routing_equals_each_domain_alone(transformer) -> None:
    add_masked_lora(transformer, ["lego", "clay"], CFG)
    randomize_adapters(transformer)
    alone = {}
    for d in ["lego", "clay"]:
        with route(transformer, domains=d):
            alone[d] = run(transformer)
    with route(transformer, domains=["clay", "lego"]):
        mixed = run(transformer)
    torch.testing.assert_close(mixed[0], alone["clay"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1], alone["lego"][1], atol=1e-5, rtol=1e-5)


def test_unseen_domain_uses_shared_rows_only() -> None:
    base = torch.nn.Linear(12, 9)
    layer = MaskedLoRALinear(base, rank=10, alpha=5, max_domains=2, domains=["lego", "clay"])
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(3, 4, 12)
    layer.set_routing(resolve_routing(layer.domain_names, domains=["sand", "lego", "sand"], unseen="shared"))
    out = layer(x)
    s = layer.shared_rows
    shared_only = base(x) + x @ layer.lora_A.weight[:s].T @ layer.lora_B.weight[:, :s].T * 0.5
    torch.testing.assert_close(out[0], shared_only[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[2], shared_only[2], atol=1e-5, rtol=1e-5)
    rows = list(range(s)) + list(range(layer.domain_rows("lego").start, layer.domain_rows("lego").stop))
    lego = base(x) + x @ layer.lora_A.weight[rows].T @ layer.lora_B.weight[:, rows].T * 0.5
    torch.testing.assert_close(out[1], lego[1], atol=1e-5, rtol=1e-5)


def test_unseen_domain_on_the_model_and_disabled_is_base(transformer) -> None:
    base = run(transformer)
    add_masked_lora(transformer, ["lego", "clay"], CFG)
    randomize_adapters(transformer)
    with route(transformer, domains="sand", unseen="shared"):
        shared = run(transformer)
        with disabled(transformer):
            assert torch.equal(run(transformer), base)
    with route(transformer, domains="lego"):
        assert not torch.allclose(run(transformer), shared, atol=1e-4)
    with torch.no_grad():  # zeroing every domain block makes each domain equal to the shared-only output
        for layer in adapter_layers(transformer).values():
            layer.lora_B.weight[:, layer.shared_rows:] = 0
    with route(transformer, domains="lego"):
        torch.testing.assert_close(run(transformer), shared, atol=1e-6, rtol=1e-6)


def test_reserved_blocks_and_errors(transformer) -> None:
    add_masked_lora(transformer, ["lego"], MaskedLoRAConfig(rank=12, max_domains=2))
    add_domain(transformer, "clay")
    with pytest.raises(ValueError, match="max_domains"):
        add_domain(transformer, "paint")
    with pytest.raises(ValueError, match="use rank >= 10"):
        MaskedLoRAConfig(rank=4, max_domains=3)
    with pytest.raises(ValueError, match="domain_fraction"):
        MaskedLoRAConfig(domain_fraction=1.2)
    with pytest.raises(ValueError, match="Unknown domain 'sand'.*unseen='shared'"):
        with route(transformer, domains="sand"):
            pass
