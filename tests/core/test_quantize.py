"""Quantization through diffusers' quantization_config: schemes, one-line errors, every layout on a quantized model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from procseq.models.quantize import QUANTIZATIONS, check_quantization, quantization_config


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown quantization 'int3'"):
        check_quantization("int3")
    assert quantization_config("none") is None and "none" in QUANTIZATIONS


def test_missing_backend_says_what_to_install(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(ValueError, match="pip install torchao"):
        check_quantization("int8")
    from procseq.pipelines.loading import load_pipeline

    with pytest.raises(ValueError, match="pip install torchao"):  # before anything loads
        load_pipeline("procseq-tiny", quantize="int8")


def test_int8_config_targets_the_transformer() -> None:
    pytest.importorskip("torchao")
    from diffusers import PipelineQuantizationConfig, TorchAoConfig

    config = quantization_config("int8")
    assert isinstance(config, PipelineQuantizationConfig)
    assert set(config.quant_mapping) == {"transformer"} and isinstance(config.quant_mapping["transformer"], TorchAoConfig)


@pytest.fixture(scope="module")
def quantized(tiny_model_dir):
    pytest.importorskip("torchao")
    from procseq.pipelines.loading import load_pipeline

    before = torch.get_num_threads()
    try:
        pipe = load_pipeline(tiny_model_dir, device="cpu", threads=1, quantize="int8", dtype="float32")
    finally:
        torch.set_num_threads(before)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_int8_weights_are_quantized_and_close(quantized, tiny_pipe) -> None:
    weight = quantized.transformer.transformer_blocks[0].attn.to_q.weight
    assert "Int8" in type(weight).__name__  # a torchao int8 tensor
    kwargs = dict(prompt="a red circle", domain="painting", frames=4, num_inference_steps=2, output_type="np")
    a = quantized(**kwargs, generator=torch.Generator().manual_seed(0)).images
    b = tiny_pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    assert a.shape == b.shape and np.abs(a - b).mean() < 0.05


@pytest.mark.parametrize("mode", ["regional", "frame-by-frame"])
def test_every_layout_runs_quantized(quantized, mode: str) -> None:
    out = quantized("a red circle", domain="painting", frames=3, num_inference_steps=2, mode=mode,
                    generator=torch.Generator().manual_seed(0))
    assert len(out.frames[0]) == 3
