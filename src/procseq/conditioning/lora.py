"""The condition LoRA: one peft LoRA that reads known frames, whichever cells they occupy.

It is active only in the condition pass (concat mode) or is an ordinary LoRA of the main pass
(in-place mode). The file is a diffusers LoRA (``pytorch_lora_weights.safetensors``, peft names,
``transformer.`` prefix) beside ``known_frames.json`` (mode, rank, alpha, targets). procseq-tiny ships
one in ``known_frames/``; the older ``recraft/`` folder layout (last cell only) still loads. Which pass it is on in,
and how it is loaded and switched, is the LoRA registry's (:mod:`procseq.conditioning.loras`); this module adds,
trains and saves one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from procseq.conditioning.loras import KINDS, KNOWN_FRAMES, LORA_FILE, inject, read_lora, shipped_folder
from procseq.conditioning.loras import read_meta as _read_meta
from procseq.models.peft_switch import set_active

ADAPTER_NAME = KNOWN_FRAMES.name
LORA_DIRS = KNOWN_FRAMES.folders
LORA_METAS = KNOWN_FRAMES.metas
DEFAULT_TARGETS: tuple[str, ...] = ("x_embedder", "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2",
                                    "proj_mlp", "proj_out")


def default_condition_lora(model_folder: str | Path | None) -> Path | None:
    """The condition LoRA folder a model ships (``known_frames/``, else the legacy ``recraft/``), if any."""
    return shipped_folder(KNOWN_FRAMES, model_folder)


def read_meta(folder: Path, names: tuple[str, ...] = LORA_METAS) -> dict[str, Any]:
    """The LoRA's ``known_frames.json`` (or legacy ``recraft.json``, or the first of `names`); empty when there is none."""
    return _read_meta(folder, names)


def add_condition_lora(transformer: Any, rank: int, alpha: float, targets: list[str] | tuple[str, ...],
                       adapter_name: str = ADAPTER_NAME) -> None:
    """Add the (untrained, gaussian-A zero-B) peft LoRA `adapter_name` (``"known_frames"``) to `transformer`."""
    from peft import LoraConfig

    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                       init_lora_weights="gaussian"), adapter_name=adapter_name)


def lora_parameters(transformer: Any, adapter_name: str = ADAPTER_NAME) -> list[Any]:
    """The parameters of peft adapter `adapter_name`, made trainable (``ValueError`` when it is missing)."""
    params = [p for n, p in transformer.named_parameters() if "lora_" in n and f".{adapter_name}." in n]
    if not params:
        raise ValueError(f"The transformer has no '{adapter_name}' LoRA; add it (add_condition_lora) first.")
    for p in params:
        p.requires_grad_(True)
    return params


def save_condition_lora(transformer: Any, out: str | Path, meta: dict[str, Any], adapter_name: str = ADAPTER_NAME,
                        meta_name: str = LORA_METAS[0]) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (peft/diffusers keys) of adapter `adapter_name` and its metadata
    (`meta_name`, ``known_frames.json``) into `out`."""
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict

    out = Path(out)
    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    FluxPipeline.save_lora_weights(out, transformer_lora_layers=state, weight_name=LORA_FILE, safe_serialization=True)
    (out / meta_name).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_condition_lora(pipe: Any, path: str | Path, adapter_name: str = ADAPTER_NAME,
                        metas: tuple[str, ...] = LORA_METAS) -> dict[str, Any]:
    """Load a LoRA (its folder or its ``.safetensors``) into `pipe`'s transformer as adapter `adapter_name`
    (``"known_frames"``), resident: it stays in the model. A procseq pipeline keeps it in its LoRA registry (off
    outside the passes that want it); any other pipeline gets it active, stacked on the adapters already active.
    Returns its metadata (``mode``...) with ``"path"``; ``ValueError`` / ``FileNotFoundError`` when it does not fit."""
    kind = KINDS.get(adapter_name) or replace(KNOWN_FRAMES, name=adapter_name)
    registry = getattr(pipe, "loras", None)
    if registry is not None and adapter_name in KINDS:
        return registry.load(kind, path, resident=True, metas=metas).info()
    lora = read_lora(kind, path, pipe.transformer, metas)
    inject(pipe.transformer, lora)
    set_active(pipe.transformer, on=[adapter_name])
    return lora.info()


__all__ = ["ADAPTER_NAME", "DEFAULT_TARGETS", "LORA_FILE", "add_condition_lora", "default_condition_lora", "lora_parameters",
           "load_condition_lora", "read_meta", "save_condition_lora"]
