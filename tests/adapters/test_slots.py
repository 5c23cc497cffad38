"""The adapter layers a model remembers (so a call does not walk its modules again) are always the ones a walk finds:
after adding, removing, bypassing, and under a peft LoRA that wraps one of them."""

from __future__ import annotations

import torch
from torch import nn

from procseq.adapters import AsymmetricLoRAConfig, adapter_layers, add_asymmetric_lora, remove_adapters
from procseq.adapters.routing import RoutedLoRALinear, bypassed
from tests.adapters.micro import randomize_adapters


def walked(model: nn.Module) -> dict[str, nn.Module]:
    """What ``named_modules`` finds: the reference the remembered slots must equal (keys and order)."""
    return {n.removesuffix(".base_layer"): m for n, m in model.named_modules() if isinstance(m, RoutedLoRALinear)}


def same(model: nn.Module) -> bool:
    got, ref = adapter_layers(model), walked(model)
    return list(got) == list(ref) and all(got[k] is ref[k] for k in ref)


def test_remembered_layers_follow_every_change(transformer) -> None:
    assert adapter_layers(transformer) == {}
    add_asymmetric_lora(transformer, ["lego"], AsymmetricLoRAConfig(rank=2, alpha=2))
    randomize_adapters(transformer)
    assert len(adapter_layers(transformer)) > 0 and same(transformer)
    assert same(transformer)  # the remembered answer
    with bypassed(transformer):
        assert adapter_layers(transformer) == {} and walked(transformer) == {}
    assert same(transformer)  # put back, remembered again
    g = torch.Generator().manual_seed(0)
    m = transformer.get_submodule("transformer_blocks.0.attn.to_q")
    style = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(2, m.in_features, generator=g),
             "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(m.out_features, 2, generator=g)}
    transformer.load_lora_adapter(style, prefix="transformer", adapter_name="style")
    assert same(transformer)  # wrapped by peft: found again at its own path
    with bypassed(transformer):
        assert adapter_layers(transformer) == {}
    assert same(transformer)
    transformer.unload_lora()
    assert same(transformer)
    remove_adapters(transformer)
    assert adapter_layers(transformer) == {} and walked(transformer) == {}


def test_a_wrapped_ancestor_changes_the_paths(transformer) -> None:
    """A wrapper put around a block (as FSDP's auto-wrap does) moves the layers under it to new paths: found again."""
    add_asymmetric_lora(transformer, ["lego"], AsymmetricLoRAConfig(rank=2, alpha=2))
    assert same(transformer)

    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

    transformer.transformer_blocks[0] = Wrapper(transformer.transformer_blocks[0])
    assert same(transformer) and "transformer_blocks.0.inner.attn.to_q" in adapter_layers(transformer)
