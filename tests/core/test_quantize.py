"""Weight-only int8 quantization of the transformer's block linears: shapes, closeness, memory, adapters left alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from procseq.adapters import add_asymmetric_lora
from procseq.models.quantize import Int8WeightLinear, quantize_transformer


def forward(transformer, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    ids = torch.zeros(16, 3)
    ids[:, 1], ids[:, 2] = torch.arange(4).repeat_interleave(4), torch.arange(4).repeat(4)
    with torch.no_grad():
        return transformer(hidden_states=torch.randn(1, 16, cfg.in_channels, generator=g),
                           encoder_hidden_states=torch.randn(1, 5, cfg.joint_attention_dim, generator=g),
                           pooled_projections=torch.randn(1, cfg.pooled_projection_dim, generator=g),
                           timestep=torch.tensor([0.5]), img_ids=ids, txt_ids=torch.zeros(5, 3), return_dict=False)[0]


def weight_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def test_int8_is_close_and_smaller(tiny_pipe) -> None:
    base = tiny_pipe.transformer
    quant = copy.deepcopy(base)
    n = quantize_transformer(quant, "int8")
    assert n > 0 and sum(isinstance(m, Int8WeightLinear) for m in quant.modules()) == n
    assert quant.x_embedder.__class__ is nn.Linear  # embedders stay as they are
    ref, out = forward(base), forward(quant)
    assert out.shape == ref.shape
    assert (out - ref).norm() / ref.norm() < 0.05
    assert weight_bytes(quant) < 0.6 * weight_bytes(base)
    assert quantize_transformer(quant, "int8") == 0  # already quantized: nothing left to do
    with pytest.raises(ValueError, match="Unknown quantization"):
        quantize_transformer(quant, "int3")


def test_adapter_layers_are_left_alone(tiny_pipe) -> None:
    model = copy.deepcopy(tiny_pipe.transformer)
    add_asymmetric_lora(model, ["lego", "clay"])
    wrapped = {name for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped
    quantize_transformer(model, "int8")
    for name in wrapped:
        assert not any(isinstance(m, Int8WeightLinear) for m in model.get_submodule(name).modules())
    assert any(isinstance(m, Int8WeightLinear) for m in model.modules())


def test_load_pipeline_quantized(tiny_model_dir) -> None:
    from procseq.models.loading import load_pipeline

    before = torch.get_num_threads()
    try:
        pipe = load_pipeline(tiny_model_dir, device="cpu", threads=1, quantize="int8")
    finally:
        torch.set_num_threads(before)
    pipe.set_progress_bar_config(disable=True)
    assert any(isinstance(m, Int8WeightLinear) for m in pipe.transformer.modules())
    out = pipe("a red circle", domain="painting", frames=4, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert len(out.frames[0]) == 4
