"""Insertions on a pipeline that carries multi-domain adapters: the base model's frame, no second model copy."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FluxTransformer2DModel

from procseq.adapters import AsymmetricLoRAConfig, adapter_layers, add_asymmetric_lora, route, save_adapters
from procseq.cli.adapt import make_interpolator
from procseq.pipelines.loading import load_pipeline
from tests.adapters.micro import randomize_adapters


def test_model_insertion_ignores_the_domain_adapters(tiny_model_dir, tmp_path) -> None:
    transformer = FluxTransformer2DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    add_asymmetric_lora(transformer, ["clay"], AsymmetricLoRAConfig(rank=4))
    randomize_adapters(transformer, std=0.5)
    file = save_adapters(transformer, tmp_path / "adapters.safetensors")
    plain = load_pipeline(tiny_model_dir, device="cpu", adapters="none")
    adapted = load_pipeline(tiny_model_dir, device="cpu", adapters=str(file))
    for pipe in (plain, adapted):
        pipe.set_progress_bar_config(disable=True)
    assert adapted.adapter_domains == ["clay"]
    g = torch.Generator().manual_seed(0)
    left, right = plain("a red circle", domain="clay", frames=2, num_inference_steps=2, generator=g,
                        allow_unseen=True).frames[0]
    kwargs = dict(num_inference_steps=2, true_cfg_scale=1.0)
    expected = make_interpolator("model", plain, "a red circle", "clay", **kwargs)(left, right, ["a", "b", "c"], 3)
    got = make_interpolator("model", adapted, "a red circle", "clay", **kwargs)(left, right, ["a", "b", "c"], 3)
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert all(layer.enabled for layer in adapter_layers(adapted.transformer).values())  # on again afterwards
    layer = adapter_layers(adapted.transformer)["transformer_blocks.0.attn.to_q"]
    h = torch.randn(1, 4, layer.in_features)
    with route(adapted.transformer, domains="clay"), torch.no_grad():  # and they do change the model here
        assert not torch.allclose(layer(h), layer.base(h))
