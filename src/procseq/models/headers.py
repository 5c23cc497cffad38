"""Read what a checkpoint folder holds without loading torch: safetensors metadata and shapes, adapter domains,
VAE scale (through ``safetensors.safe_open`` with the NumPy framework, which reads only the header)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ADAPTER_METADATA_KEY = "procseq_adapter"
"""The safetensors metadata key of procseq's multi-domain adapter files (:mod:`procseq.adapters.io`)."""


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """A safetensors file's header: ``{name: {"shape": [...]}, "__metadata__": {...}}`` (``ValueError`` when the file
    is not a readable safetensors file)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header: dict[str, Any] = {k: {"shape": list(f.get_slice(k).get_shape())} for k in f.keys()}
            header["__metadata__"] = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    return header


def tensor_count(path: str | Path) -> int:
    """Number of scalars stored in a safetensors file (parameters, for a weights file)."""
    return sum(math.prod(entry["shape"]) for key, entry in safetensors_header(path).items() if key != "__metadata__")


def transformer_params(location: str | Path) -> int | None:
    """Parameter count of a Flux folder's transformer, read from its safetensors headers (None if unknown)."""
    folder = Path(location) / "transformer"
    total = sum(tensor_count(f) for f in folder.glob("*.safetensors")) if folder.is_dir() else 0
    return total or None


def adapter_domains(path: str | Path) -> list[str]:
    """The domains of a procseq adapter file, from its header (``[]`` if it is not one)."""
    header = safetensors_header(path)
    meta = header.get("__metadata__") or {} if isinstance(header, dict) else {}
    if not isinstance(meta, dict) or ADAPTER_METADATA_KEY not in meta:
        return []
    try:
        info = json.loads(meta[ADAPTER_METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: its '{ADAPTER_METADATA_KEY}' metadata is not JSON ({err}).") from err
    domains = info.get("domains", []) if isinstance(info, dict) else None
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise ValueError(f"{path}: its '{ADAPTER_METADATA_KEY}' metadata has no list of domain names; "
                         "pass a file written by `procseq train adapter`.")
    return list(domains)


def vae_scale_factor(location: str | Path) -> int | None:
    """The VAE's downsampling factor from ``vae/config.json`` (as FluxPipeline computes it; None if absent)."""
    config = Path(location) / "vae" / "config.json"
    if not config.is_file():
        return None
    return 2 ** (len(json.loads(config.read_text()).get("block_out_channels", [0] * 4)) - 1)
