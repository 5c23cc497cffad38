"""Adapter files: procseq's multi-domain safetensors, plain single-LoRA export, MakeAnything kohya import.

Key names follow peft/diffusers (design decision 5):

* multi-domain file (:func:`save_adapters`): ``transformer.<path>.lora_A.weight`` plus
  ``transformer.<path>.lora_B.<domain>.weight`` (asymmetric) or ``transformer.<path>.lora_B.weight``
  (masked; a learned row mask adds ``transformer.<path>.lora_row_logits``), and a ``procseq_adapter``
  JSON metadata entry (kind, rank, alpha, domains, the masked layout, per-layer ranks/alphas that differ
  from the first layer's);
* plain LoRA (:func:`export_domain`): ``transformer.<path>.lora_A.weight`` /
  ``transformer.<path>.lora_B.weight`` with ``alpha / rank`` and the domain weights folded into B, so
  stock ``FluxPipeline.load_lora_weights(path)`` applies exactly one domain (or one mix);
* MakeAnything's released asymmetric LoRAs (kohya sd-scripts layout, :func:`import_kohya_asymmetric`):
  ``lora_unet_{double|single}_blocks_{i}_{module}.lora_down.weight``, ``.lora_ups.{k}.weight`` (one per
  domain), ``.alpha``; fused projections (``img_attn_qkv``, single-block ``linear1`` = q, k, v, mlp)
  are split into diffusers' separate layers, following diffusers' own kohya -> diffusers Flux mapping
  (``diffusers.loaders.lora_conversion_utils._convert_kohya_flux_lora_to_diffusers``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from procseq.outputs import atomic_file
from torch import nn

from procseq.adapters.asymmetric import AsymmetricLoRAConfig, AsymmetricLoRALinear, add_asymmetric_lora
from procseq.adapters.masked import MaskedLoRAConfig, MaskedLoRALinear, add_masked_lora, layer_settings
from procseq.adapters.routing import Unseen, require_adapters, adapter_layers, add_domain, resolve_routing
from procseq.models.headers import ADAPTER_METADATA_KEY as METADATA_KEY

PREFIX = "transformer."
FORMAT_VERSION = 1

# kohya (BFL naming) module -> diffusers sub-paths, as in diffusers' kohya Flux converter.
_KOHYA_DOUBLE: dict[str, tuple[str, ...]] = {
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "img_attn_proj": ("attn.to_out.0",),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "txt_attn_proj": ("attn.to_add_out",),
    "img_mlp_0": ("ff.net.0.proj",),
    "img_mlp_2": ("ff.net.2",),
    "txt_mlp_0": ("ff_context.net.0.proj",),
    "txt_mlp_2": ("ff_context.net.2",),
    "img_mod_lin": ("norm1.linear",),
    "txt_mod_lin": ("norm1_context.linear",),
}
_KOHYA_SINGLE: dict[str, tuple[str, ...]] = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": ("proj_out",),
    "modulation_lin": ("norm.linear",),
}
_KOHYA_KEY = re.compile(r"lora_unet_(double|single)_blocks_(\d+)_([a-z0-9_]+)\.(lora_down\.weight|lora_up\.weight|"
                        r"lora_ups\.(\d+)\.weight|alpha)")


def _read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No adapter file at {path}; check the path (a .safetensors file).")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for corrupt or truncated files
        raise ValueError(f"{path} is not a readable safetensors file ({' '.join(str(err).split())}); "
                         "pass an intact adapter file.") from err


_REQUIRED = {"asymmetric": ("rank", "alpha", "domains"),
             "masked": ("rank", "alpha", "domains", "domain_fraction", "max_domains")}


def _adapter_metadata(path: str | Path, metadata: Mapping[str, str]) -> dict:
    """The checked ``procseq_adapters`` record of a file: a known kind with every field it needs."""
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a procseq multi-domain adapter file (no '{METADATA_KEY}' metadata); "
                         f"for MakeAnything kohya files use import_kohya_asymmetric, for plain LoRAs "
                         f"pipe.load_lora_weights.")
    try:
        info = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its '{METADATA_KEY}' metadata is not JSON ({err}).") from err
    if not isinstance(info, dict) or info.get("kind") not in _REQUIRED:
        kind = info.get("kind") if isinstance(info, dict) else None
        raise ValueError(f"Unknown adapter kind {kind!r} in {path}; expected 'asymmetric' or 'masked'.")
    missing = [k for k in _REQUIRED[info["kind"]] if k not in info]
    if missing or not isinstance(info["domains"], list) or not info["domains"]:
        raise ValueError(f"{path}: the {info['kind']} adapter metadata lacks {', '.join(missing) or 'domains'}; "
                         "the file is damaged or was edited: re-export it with `procseq train adapter`.")
    return info


def adapter_file_info(path: str | Path) -> dict:
    """The metadata of a :func:`save_adapters` file (kind, rank, alpha, domains...), without loading tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No adapter file at {path}; check the path (a .safetensors file).")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    return _adapter_metadata(path, metadata)


def _kind_and_config(layers: Mapping[str, nn.Module]) -> dict:
    first = next(iter(layers.values()))
    info = {"format_version": FORMAT_VERSION, "kind": first.kind, "rank": first.rank, "alpha": first.alpha,
            "domains": list(first.domain_names)}
    ranks = {n: m.rank for n, m in layers.items() if m.rank != first.rank}
    alphas = {n: m.alpha for n, m in layers.items() if m.alpha != first.alpha}
    if ranks or alphas:
        info.update(layer_ranks=ranks, layer_alphas=alphas)
    if isinstance(first, MaskedLoRALinear):
        info.update(layer_settings(layers))
    return info


def _patterns(info: Mapping) -> dict:
    """The per-layer ``rank_pattern``/``alpha_pattern`` of a file's metadata (exact module paths)."""
    return {"rank_pattern": {re.escape(p): int(r) for p, r in dict(info.get("layer_ranks") or {}).items()},
            "alpha_pattern": {re.escape(p): float(a) for p, a in dict(info.get("layer_alphas") or {}).items()}}


def _masked_layout(info: Mapping) -> tuple[str, str, str]:
    """``(mask, row_mask, band)`` of a masked file's metadata; a file older than an option has its old value."""
    return info.get("mask", "rank"), info.get("row_mask", "fixed"), info.get("band", "split")


def save_adapters(transformer: nn.Module, path: str | Path) -> Path:
    """Write every procseq adapter of `transformer` (all domains) to a safetensors file; returns the path."""
    layers = require_adapters(transformer)
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.weight.detach()
        if isinstance(layer, AsymmetricLoRALinear):
            for d in layer.domain_names:
                tensors[f"{PREFIX}{name}.lora_B.{d}.weight"] = layer.lora_B[d].weight.detach()
        else:
            tensors[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B.weight.detach()
            if layer.lora_row_logits is not None:
                tensors[f"{PREFIX}{name}.lora_row_logits"] = layer.lora_row_logits.detach()
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={METADATA_KEY: json.dumps(_kind_and_config(layers))})
    return Path(path)


def load_adapters(transformer: nn.Module, path: str | Path) -> list[str]:
    """Load a :func:`save_adapters` file into `transformer`; returns the file's domains.

    A transformer without procseq adapters gets them (same kind, rank, alpha, module set); one with
    adapters must have the same kind, rank and modules, and gains the file's missing domains.
    """
    tensors, metadata = _read(path)
    info = _adapter_metadata(path, metadata)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path} holds NaN or infinite weights ({bad[0]}{' ...' if len(bad) > 1 else ''}); it would "
                         "generate black frames: use an earlier adapter file or retrain.")
    paths = sorted({k[len(PREFIX):].split(".lora_A.")[0] for k in tensors if ".lora_A." in k})
    targets = tuple(re.escape(p) for p in paths)
    if not adapter_layers(transformer):
        if info["kind"] == "asymmetric":
            add_asymmetric_lora(transformer, info["domains"], AsymmetricLoRAConfig(
                rank=info["rank"], alpha=info["alpha"], target_modules=targets, **_patterns(info)))
        elif info["kind"] == "masked":
            add_masked_lora(transformer, info["domains"], MaskedLoRAConfig(
                rank=info["rank"], alpha=info["alpha"], domain_fraction=info["domain_fraction"],
                max_domains=info["max_domains"], target_modules=targets, mask=info.get("mask", "rank"),
                row_mask=info.get("row_mask", "fixed"), band=info.get("band", "split"), **_patterns(info)))
        else:
            raise ValueError(f"Unknown adapter kind {info['kind']!r} in {path}; expected 'asymmetric' or 'masked'.")
    layers = require_adapters(transformer)
    first = next(iter(layers.values()))
    if first.kind != info["kind"] or first.rank != info["rank"] or sorted(layers) != paths:
        raise ValueError(f"{path} holds a {info['kind']} LoRA of rank {info['rank']} on {len(paths)} modules, but the "
                         f"model has a {first.kind} LoRA of rank {first.rank} on {len(layers)}; load it into a "
                         f"transformer without adapters.")
    if isinstance(first, MaskedLoRALinear) and (
            first.domain_names != info["domains"][:len(first.domain_names)]
            or (first.mask, first.row_mask, first.band) != _masked_layout(info)):
        raise ValueError(f"Masked LoRA layouts differ: model {first.domain_names} ({first.mask}/{first.row_mask} "
                         f"mask, {first.band} band), file {info['domains']} ({'/'.join(_masked_layout(info)[:2])} mask, "
                         f"{_masked_layout(info)[2]} band); load into a transformer without adapters.")
    for d in info["domains"]:
        if d not in first.domain_names:
            add_domain(transformer, d)
    pairs = []
    for name, layer in layers.items():
        pairs.append((layer.lora_A.weight, f"{PREFIX}{name}.lora_A.weight"))
        if isinstance(layer, AsymmetricLoRALinear):
            pairs += [(layer.lora_B[d].weight, f"{PREFIX}{name}.lora_B.{d}.weight") for d in info["domains"]]
        else:
            pairs.append((layer.lora_B.weight, f"{PREFIX}{name}.lora_B.weight"))
            if layer.lora_row_logits is not None:
                pairs.append((layer.lora_row_logits, f"{PREFIX}{name}.lora_row_logits"))
    for param, key in pairs:  # check everything before changing anything
        if key not in tensors or tensors[key].shape != param.shape:
            found = "missing" if key not in tensors else f"of shape {tuple(tensors[key].shape)}"
            raise ValueError(f"{path}: {key} is {found}, the model needs {tuple(param.shape)}; the file does not fit "
                             "this model (or is damaged).")
    with torch.no_grad():
        for param, key in pairs:
            param.copy_(tensors[key])
    return list(info["domains"])


def export_domain(transformer: nn.Module, domain: str | Mapping[str, float], path: str | Path,
                  unseen: Unseen = "error") -> Path:
    """Write one domain (``"lego"``) or one mix (``{"lego": 0.7, "clay": 0.3}``) as a plain LoRA.

    The file has ``transformer.<path>.lora_A.weight`` / ``.lora_B.weight`` with the scaling folded into B
    (no alpha: peft's default alpha = rank gives scaling 1), loadable by ``FluxPipeline.load_lora_weights``.
    `unseen="shared"` exports a masked LoRA's shared rows for a domain it never saw.
    """
    layers = require_adapters(transformer)
    first = next(iter(layers.values()))
    if unseen == "shared" and not first.supports_unseen:
        raise ValueError("unseen='shared' needs a masked LoRA; export a known domain of this asymmetric LoRA.")
    spec = {"domains": domain} if isinstance(domain, str) else {"weights": domain}
    row = resolve_routing(first.domain_names, unseen=unseen, **spec)[0]
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        a, b = layer.merged_lora(row)
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.contiguous().cpu()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.contiguous().cpu()
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "procseq_export": json.dumps(
            {"kind": first.kind, "route": domain if isinstance(domain, str) else dict(domain)})})
    return Path(path)


def _kohya_groups(tensors: Mapping[str, torch.Tensor]) -> dict[tuple[str, int, str], dict]:
    groups: dict[tuple[str, int, str], dict] = {}
    bad = []
    for key, value in tensors.items():
        m = _KOHYA_KEY.fullmatch(key)
        table = _KOHYA_DOUBLE if m and m.group(1) == "double" else _KOHYA_SINGLE
        if not m or m.group(3) not in table:
            bad.append(key)
            continue
        g = groups.setdefault((m.group(1), int(m.group(2)), m.group(3)), {"ups": {}})
        if m.group(4) == "lora_down.weight":
            g["down"] = value
        elif m.group(4) == "alpha":
            g["alpha"] = float(value)
        else:
            g["ups"][int(m.group(5) or 0)] = value
    if bad:
        raise ValueError(f"Keys outside the supported kohya Flux blocks: {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
                         f"only lora_unet_double_blocks_* / lora_unet_single_blocks_* modules can be imported.")
    return groups


def import_kohya_asymmetric(transformer: nn.Module, path: str | Path, domains: Sequence[str],
                            dropout: float = 0.0) -> list[str]:
    """Import a MakeAnything asymmetric LoRA (kohya layout) into `transformer`; returns the wrapped paths.

    Args:
        transformer: a ``FluxTransformer2DModel`` without procseq adapters (they are added on exactly the
            file's modules), or one with an asymmetric LoRA of the same rank on those modules.
        path: the ``.safetensors`` file; ``lora_ups.{k}`` is domain ``domains[k]`` (a single
            ``lora_up`` counts as ``k = 0``).
        domains: names of the file's domains in ``lora_ups`` index order (MakeAnything's split script
            numbers them from 1: ``--lora_up 1`` is ``domains[0]``).
        dropout: dropout of the new adapters (for further training).

    ``scale = alpha / rank`` is kept as the model's scaling (of the first module); modules with a
    different alpha get the ratio folded into their ``lora_B``.
    """
    tensors, _ = _read(path)
    groups = _kohya_groups(tensors)
    if not groups:
        raise ValueError(f"{path} has no kohya Flux LoRA keys (lora_unet_..._blocks_...).")
    n_ups = max(len(g["ups"]) for g in groups.values())
    names = list(domains)
    if len(names) != n_ups or any(sorted(g["ups"]) != list(range(n_ups)) for g in groups.values()):
        raise ValueError(f"The file has {n_ups} lora_ups per module; pass domains=[...] with {n_ups} names in "
                         f"lora_ups order (got {names}).")
    ranks = {g["down"].shape[0] for g in groups.values() if "down" in g}
    if len(ranks) != 1 or any("down" not in g for g in groups.values()):
        raise ValueError(f"Every module needs one lora_down of a common rank; found ranks {sorted(ranks)}.")
    rank = ranks.pop()
    alpha = next(iter(groups.values())).get("alpha", float(rank))
    plan: list[tuple[str, torch.Tensor, list[torch.Tensor]]] = []  # (path, A, [B per domain])
    for (kind, i, module), g in groups.items():
        block = f"{'transformer_blocks' if kind == 'double' else 'single_transformer_blocks'}.{i}"
        subs = (_KOHYA_DOUBLE if kind == "double" else _KOHYA_SINGLE)[module]
        try:
            dims = [transformer.get_submodule(f"{block}.{s}").out_features for s in subs]
        except AttributeError:
            raise ValueError(f"{path} targets {block}.{subs[0]}, which this transformer does not have "
                             f"(too few blocks?); import into the model the LoRA was trained for.") from None
        ratio = g.get("alpha", float(rank)) / alpha
        ups = [g["ups"][k] * ratio for k in range(n_ups)]
        if any(u.shape[0] != sum(dims) for u in ups):
            raise ValueError(f"{module} of {block}: lora_up has {ups[0].shape[0]} rows, the model's layers "
                             f"{list(subs)} have {sum(dims)} outputs; the file is for another model size.")
        splits = [torch.split(u, dims, dim=0) for u in ups]
        plan += [(f"{block}.{s}", g["down"], [sp[j] for sp in splits]) for j, s in enumerate(subs)]
    paths = [p for p, _, _ in plan]
    if not adapter_layers(transformer):
        add_asymmetric_lora(transformer, names, AsymmetricLoRAConfig(
            rank=rank, alpha=alpha, dropout=dropout, target_modules=tuple(re.escape(p) for p in paths)))
    layers = require_adapters(transformer)
    first = next(iter(layers.values()))
    missing = [p for p in paths if p not in layers]
    if not isinstance(first, AsymmetricLoRALinear) or first.rank != rank or missing:
        raise ValueError(f"The model's adapters do not fit the file (kind {first.kind}, rank {first.rank} vs "
                         f"asymmetric rank {rank}; modules missing: {missing[:3]}); import into a transformer "
                         f"without adapters.")
    for d in names:
        if d not in first.domain_names:
            add_domain(transformer, d)
    with torch.no_grad():
        for p, a, bs in plan:
            layer = layers[p]
            layer.lora_A.weight.copy_(a)
            for d, b in zip(names, bs):
                layer.lora_B[d].weight.copy_(b * alpha / rank / layer.scaling)
    return paths
