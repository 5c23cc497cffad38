"""The condition LoRA: one peft LoRA that reads known frames, whichever cells they occupy.

It is active only in the condition pass (concat mode) or is an ordinary LoRA of the main pass
(in-place mode). The file is a diffusers LoRA (``pytorch_lora_weights.safetensors``, peft names,
``transformer.`` prefix) beside ``known_frames.json`` (mode, rank, alpha, targets). procseq-tiny ships
one in ``known_frames/``; the older ``recraft/`` folder layout (last cell only) still loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from procseq.attention.processors import CONDITION_ADAPTER

ADAPTER_NAME = CONDITION_ADAPTER
LORA_DIRS = ("known_frames", "recraft")
LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_METAS = ("known_frames.json", "recraft.json")
DEFAULT_TARGETS: tuple[str, ...] = ("x_embedder", "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2",
                                    "proj_mlp", "proj_out")


def default_condition_lora(model_folder: str | Path | None) -> Path | None:
    """The condition LoRA folder a model ships (``known_frames/``, else the legacy ``recraft/``), if any."""
    if not model_folder:
        return None
    for name in LORA_DIRS:
        folder = Path(model_folder) / name
        if (folder / LORA_FILE).is_file():
            return folder
    return None


def read_meta(folder: Path, names: tuple[str, ...] = LORA_METAS) -> dict[str, Any]:
    """The LoRA's ``known_frames.json`` (or legacy ``recraft.json``, or the first of `names`); empty when there is none."""
    for name in names:
        if (folder / name).is_file():
            return dict(json.loads((folder / name).read_text()))
    return {}


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
    """Load a condition LoRA (its folder or its ``.safetensors``) into `pipe`'s transformer as adapter `adapter_name`
    (``"known_frames"``; the regional LoRA loads through here as ``"regional"``, the frame-by-frame one as
    ``"frame_by_frame"``), its metadata read from the first of `metas` found beside it.

    Loaded with peft directly (``add_adapter`` + ``set_peft_model_state_dict``, the layers named in the file),
    so it also stacks on procseq's multi-domain adapters. Returns its metadata (``mode``...) with ``"path"``.
    """
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder, weight = (path, LORA_FILE) if path.is_dir() else (path.parent, path.name)
    if not (folder / weight).is_file():
        raise FileNotFoundError(f"No condition LoRA at {folder / weight}; pass the folder written by "
                                "`procseq train known-frames` (OUTPUT_DIR/model) or its .safetensors file.")
    try:
        tensors = load_file(str(folder / weight))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{folder / weight} is not a readable LoRA file ({err}); pass the folder written by "
                         "`procseq train known-frames`.") from err
    state = {k[len("transformer."):]: v for k, v in tensors.items() if k.startswith("transformer.")}
    downs = {k[: -len(".lora_A.weight")]: v for k, v in state.items() if k.endswith(".lora_A.weight")}
    if not downs or len(state) != 2 * len(downs):
        raise ValueError(f"{folder / weight} holds no transformer LoRA in peft naming (transformer.<layer>.lora_A/"
                         "lora_B.weight); pass the folder written by `procseq train known-frames`.")
    meta = read_meta(folder, metas)
    rank = int(next(iter(downs.values())).shape[0])
    transformer = pipe.transformer
    modules = dict(transformer.named_modules())
    missing = sorted(k for k in downs if k not in modules)
    if missing:
        raise ValueError(f"{folder / weight} does not fit this transformer (no layer {missing[0]}); it was trained "
                         "for another model.")
    active = list(transformer.active_adapters()) if getattr(transformer, "_hf_peft_config_loaded", False) else []
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=float(meta.get("alpha", rank)), target_modules=sorted(downs)),
                            adapter_name=adapter_name)
    if active:  # add_adapter makes the new adapter the only active one; the ones already active stay on
        transformer.set_adapter(active + [adapter_name])
    try:
        result = set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)
    except RuntimeError as err:  # shape mismatch
        transformer.delete_adapters(adapter_name)
        raise ValueError(f"{folder / weight} does not fit this transformer ({str(err).splitlines()[0]}).") from err
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        transformer.delete_adapters(adapter_name)
        raise ValueError(f"{folder / weight} has weights this transformer cannot take ({unexpected[0]}).")
    return {**meta, "path": str(folder / weight)}


__all__ = ["ADAPTER_NAME", "DEFAULT_TARGETS", "LORA_FILE", "add_condition_lora", "default_condition_lora", "lora_parameters",
           "load_condition_lora", "read_meta", "save_condition_lora"]
