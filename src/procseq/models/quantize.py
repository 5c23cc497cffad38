"""Weight-only int8 quantization of a Flux transformer's block linears, in plain torch (no extra dependency).

Each ``nn.Linear`` inside the double and single blocks keeps its weights as int8 with one scale per
output channel (symmetric, ``w ~ q * scale``) and dequantizes them at each call: a quarter of fp32's
weight memory (half of bf16's), at the cost of the dequantization. It is for fitting FLUX.1-dev-sized
transformers in memory, not for speed; embedders, norms and the output layer stay as they are, and
linears already wrapped by adapters (LoRA, procseq's multi-domain adapters) are left alone.
"""

from __future__ import annotations

import torch
from torch import nn

QUANTIZATIONS = ("none", "int8")


class Int8WeightLinear(nn.Module):
    """A linear layer with int8 weights and per-output-channel scales (weight-only quantization).

    Args:
        linear: the layer to quantize; its bias is kept in its dtype.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("qweight", torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., in_features)`` -> ``(..., out_features)`` with the dequantized weight."""
        weight = self.qweight.to(x.dtype) * self.scale.to(x.dtype)
        return nn.functional.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def _is_adapter(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") or hasattr(module, "base_layer")


def _quantize_children(parent: nn.Module) -> int:
    count = 0
    for name, child in list(parent.named_children()):
        if type(child) is nn.Linear:  # exact type: wrapped or already quantized layers are not plain Linears
            setattr(parent, name, Int8WeightLinear(child))
            count += 1
        elif not _is_adapter(child):  # adapter wrappers (their base and LoRA linears) are left alone
            count += _quantize_children(child)
    return count


def quantize_transformer(transformer: nn.Module, method: str = "int8") -> int:
    """Quantize the plain ``nn.Linear`` layers of `transformer`'s blocks in place; returns how many were replaced.

    Load adapters before quantizing: a LoRA cannot be attached to a quantized layer afterwards.
    """
    if method not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {method!r}; use one of {', '.join(QUANTIZATIONS)}.")
    if method == "none":
        return 0
    blocks = [*getattr(transformer, "transformer_blocks", []), *getattr(transformer, "single_transformer_blocks", [])]
    return sum(_quantize_children(block) for block in blocks)


__all__ = ["Int8WeightLinear", "QUANTIZATIONS", "quantize_transformer"]
