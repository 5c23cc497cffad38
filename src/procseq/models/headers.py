"""Read what a checkpoint folder holds without loading torch: safetensors headers, adapter domains, VAE scale."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

ADAPTER_METADATA_KEY = "procseq_adapter"
"""The safetensors metadata key of procseq's multi-domain adapter files (:mod:`procseq.adapters.io`)."""


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: ``{name: {dtype, shape, data_offsets}, "__metadata__": {...}}``."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a readable safetensors file (too short).")
        (size,) = struct.unpack("<Q", raw)
        if size > 100_000_000:
            raise ValueError(f"{path} is not a readable safetensors file (header of {size} bytes).")
        try:
            return json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def tensor_count(path: str | Path) -> int:
    """Number of scalars stored in a safetensors file (parameters, for a weights file)."""
    total = 0
    for key, entry in safetensors_header(path).items():
        if key != "__metadata__":
            n = 1
            for dim in entry["shape"]:
                n *= dim
            total += n
    return total


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
