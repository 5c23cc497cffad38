"""Weight quantization through diffusers' ``quantization_config`` (the standard FLUX.1 users already use).

``--quantize NAME`` picks a backend and a scheme for the transformer's weights, applied while it loads
(``from_pretrained(..., quantization_config=...)``), so the quantized model also saves and loads as diffusers
does, and LoRAs (peft) and procseq's adapters go on top in every layout:

======== ============================================ ===========================
name     scheme                                       needs
======== ============================================ ===========================
``int8`` int8 weights, activations in the model dtype ``pip install torchao``
``nf4``  4-bit NormalFloat weights (QLoRA's)          ``pip install bitsandbytes`` (a CUDA GPU)
======== ============================================ ===========================

It is for fitting FLUX.1-dev-sized transformers in memory. On the embedded model it gains nothing (measured:
BENCHMARKS.md, "Speed"), so the default is ``none``. procseq's earlier hand-written int8 layer is gone:
it did not beat this either.
"""

from __future__ import annotations

import importlib.util
from typing import Any

QUANTIZATIONS = ("none", "int8", "nf4")
_NEEDS = {"int8": ("torchao", "torchao"), "nf4": ("bitsandbytes", "bitsandbytes")}


def check_quantization(name: str) -> None:
    """Refuse an unknown scheme, or one whose backend is not installed, with the fix (``ValueError``)."""
    if name not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {name!r}; use one of {', '.join(QUANTIZATIONS)}.")
    if name == "none":
        return
    module, package = _NEEDS[name]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"--quantize {name} needs {package}, which is not installed: pip install {package} "
                         "(or leave --quantize none).")


def backend_config(name: str) -> Any:
    """The diffusers config of one scheme (``TorchAoConfig`` / ``BitsAndBytesConfig``), for one model."""
    check_quantization(name)
    if name == "int8":
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    from diffusers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")


def quantization_config(name: str) -> Any:
    """The ``quantization_config`` for ``DiffusionPipeline.from_pretrained`` that quantizes the transformer with
    scheme `name` (None for ``"none"``)."""
    if name == "none":
        return None
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(quant_mapping={"transformer": backend_config(name)})


def quantize_module(model: Any, name: str) -> Any:
    """Quantize an already built model in place with torchao (benchmarks of random FLUX-shaped blocks); returns it.

    A model loaded from a folder should be quantized while it loads (:func:`quantization_config`) instead."""
    if name != "int8":
        raise ValueError(f"quantize_module supports int8 (torchao); got {name!r}.")
    check_quantization(name)
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig())
    return model


__all__ = ["QUANTIZATIONS", "backend_config", "check_quantization", "quantization_config", "quantize_module"]
