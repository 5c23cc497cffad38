"""Micro Flux transformers and inputs for the adapter tests (built directly, no download)."""

from __future__ import annotations

import torch
from diffusers import FluxTransformer2DModel

from procseq.adapters import adapter_layers

MICRO = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
             num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])


def micro_transformer(seed: int = 0) -> FluxTransformer2DModel:
    """A random micro FluxTransformer2DModel (inner dim 32), eval mode."""
    torch.manual_seed(seed)
    return FluxTransformer2DModel(**MICRO).eval()


def flux_inputs(batch: int = 2, seed: int = 1, in_channels: int = 16, text_dim: int = 32,
                pooled_dim: int = 32) -> dict[str, torch.Tensor]:
    """Transformer kwargs: 8 image tokens, 4 text tokens."""
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(batch, 8, in_channels, generator=g),
                encoder_hidden_states=torch.randn(batch, 4, text_dim, generator=g),
                pooled_projections=torch.randn(batch, pooled_dim, generator=g),
                timestep=torch.rand(batch, generator=g), img_ids=torch.randn(8, 3, generator=g),
                txt_ids=torch.zeros(4, 3), return_dict=False)


def randomize_adapters(model: torch.nn.Module, seed: int = 2, std: float = 0.3) -> None:
    """Give every lora_B non-zero weights (they start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            for name, p in layer.named_parameters():
                if name.startswith("lora_B"):
                    p.copy_(torch.randn(p.shape, generator=g) * std)
