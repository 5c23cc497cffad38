"""bf16 end to end: on a bfloat16 transformer the adapted linears keep activations in bfloat16 (their float32
weights are cast to the activations' dtype), while the adapter weights and their gradients stay float32."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from procseq.adapters import (AsymmetricLoRAConfig, MaskedLoRAConfig, add_asymmetric_lora, add_masked_lora,
                              disabled, route)
from procseq.conditioning.lora import add_condition_lora
from tests.adapters.micro import flux_inputs, micro_transformer, randomize_adapters


class Float32Bytes(TorchDispatchMode):
    """Bytes of every float32 tensor an op returns (activations, not weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.bytes += sum(t.numel() * 4 for t in tree_leaves(out)
                          if isinstance(t, torch.Tensor) and t.dtype == torch.float32)
        return out


def bf16_inputs() -> dict:
    return {k: v.to(torch.bfloat16) if isinstance(v, torch.Tensor) and k not in ("img_ids", "txt_ids") else v
            for k, v in flux_inputs(batch=2).items()}


def float32_bytes(model, inputs) -> tuple[int, torch.Tensor]:
    mode = Float32Bytes()
    with mode:
        out = model(**inputs)[0]
    return mode.bytes, out


@pytest.mark.parametrize("kind", ["asymmetric", "masked-rows", "masked-rank", "peft"])
def test_adapters_add_no_float32_activation_to_a_bf16_model(kind) -> None:
    model = micro_transformer().to(torch.bfloat16)  # a bf16 base, then the adapters (float32 weights; peft: bf16)
    if kind == "asymmetric":
        add_asymmetric_lora(model, ["lego", "clay"], AsymmetricLoRAConfig(rank=4))
    elif kind.startswith("masked"):
        add_masked_lora(model, ["lego", "clay"], MaskedLoRAConfig(rank=8, domain_fraction=0.5, mask=kind[7:]))
    else:
        add_condition_lora(model, 4, 4, ["to_q", "to_k", "to_v", "proj_out"])
    if kind != "peft":
        randomize_adapters(model)
    inputs = bf16_inputs()
    if kind == "peft":
        with torch.no_grad():
            adapted, out = float32_bytes(model, inputs)
            model.disable_adapters()
            plain, _ = float32_bytes(model, inputs)
    else:
        with torch.no_grad(), route(model, domains=["lego", "clay"]):
            adapted, out = float32_bytes(model, inputs)
            with disabled(model):
                plain, _ = float32_bytes(model, inputs)
    assert out.dtype == torch.bfloat16
    assert adapted == plain  # whatever float32 the base model makes (time embedding, rope), no more


def test_bf16_adapter_weights_and_gradients_stay_float32() -> None:
    model2 = micro_transformer().to(torch.bfloat16)
    add_asymmetric_lora(model2, ["lego"], AsymmetricLoRAConfig(rank=4))
    layer = model2.transformer_blocks[0].attn.to_q
    assert layer.lora_A.weight.dtype == torch.float32
    with route(model2, domains="lego"):
        out = model2(**bf16_inputs())[0]
    out.float().pow(2).mean().backward()
    assert layer.lora_A.weight.grad.dtype == torch.float32 and layer.lora_B["lego"].weight.grad is not None
