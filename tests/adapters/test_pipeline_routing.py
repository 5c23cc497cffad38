"""ProcessPipeline with installed adapters: the domain picks the B (or the mask), base domains stay exact."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from procseq.adapters import (
    AsymmetricLoRAConfig,
    MaskedLoRAConfig,
    adapter_layers,
    add_asymmetric_lora,
    add_masked_lora,
    export_domain,
    save_adapters,
)
from procseq.models.loading import ADAPTERS_FILE
from procseq.pipelines.loading import load_pipeline


def installed(tiny_model_dir, tmp_path, kind: str):
    """A copy of the micro model with random (non-zero) adapters installed for clay and sand_art."""
    folder = tmp_path / f"model-{kind}"
    shutil.copytree(tiny_model_dir, folder)
    pipe = load_pipeline(folder, device="cpu")
    torch.manual_seed(0)
    if kind == "asymmetric":
        add_asymmetric_lora(pipe.transformer, ["clay", "sand_art"], AsymmetricLoRAConfig(rank=4))
    else:
        add_masked_lora(pipe.transformer, ["clay", "sand_art"], MaskedLoRAConfig(rank=8, domain_fraction=0.5))
    with torch.no_grad():
        for layer in adapter_layers(pipe.transformer).values():
            for name, p in layer.named_parameters():
                if name.startswith("lora_B"):
                    p.normal_(0, 0.3)
    save_adapters(pipe.transformer, folder / ADAPTERS_FILE)
    return folder


def run(pipe, domain: str, **kw) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle", domain=domain, frames=4, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), **kw)
    return np.asarray(out.grid[0], dtype=np.int16)


def stock(folder, lora=None) -> np.ndarray:
    pipe = FluxPipeline.from_pretrained(folder)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a red circle", height=32, width=32, num_inference_steps=2, guidance_scale=3.5,
               max_sequence_length=16, generator=torch.Generator().manual_seed(0)).images[0]
    return np.asarray(img, dtype=np.int16)


def test_installed_adapters_route_by_domain(tiny_model_dir, tmp_path) -> None:
    folder = installed(tiny_model_dir, tmp_path, "asymmetric")
    pipe = load_pipeline(folder, device="cpu")
    plain = load_pipeline(folder, device="cpu", adapters="none")
    assert pipe.known_domains == ["painting", "lego", "clay", "sand_art"] and plain.adapter_domains == []
    # a base domain is the exact base model; an adapter domain is not
    assert np.array_equal(run(pipe, "painting"), run(plain, "painting"))
    clay = run(pipe, "clay")
    assert np.abs(clay - run(plain, "painting")).max() > 0
    assert all(layer.routing is None for layer in adapter_layers(pipe.transformer).values())  # restored
    # the domain's exported plain LoRA in stock diffusers gives the same grid (2x2 grid of 16 px = 32 px)
    export_domain(pipe.transformer, "clay", tmp_path / "clay.safetensors")
    assert np.abs(clay - stock(folder, tmp_path / "clay.safetensors")).max() <= 1
    # a mix is a different model again, and equals its export too
    mix = {"clay": 0.5, "sand_art": 0.5}
    mixed = run(pipe, "clay", adapter_weights=mix)
    export_domain(pipe.transformer, mix, tmp_path / "mix.safetensors")
    assert np.abs(mixed - stock(folder, tmp_path / "mix.safetensors")).max() <= 1
    assert np.abs(mixed - clay).max() > 0


def test_unseen_domain_rules(tiny_model_dir, tmp_path) -> None:
    folder = installed(tiny_model_dir, tmp_path, "masked")
    pipe = load_pipeline(folder, device="cpu")
    with pytest.raises(ValueError, match="allow_unseen"):
        run(pipe, "origami")
    # masked: an unseen domain gets the shared rows only (its mask removed), as the exported shared LoRA
    unseen = run(pipe, "origami", allow_unseen=True)
    export_domain(pipe.transformer, "origami", tmp_path / "shared.safetensors", unseen="shared")
    assert np.abs(unseen - stock(folder, tmp_path / "shared.safetensors")).max() <= 1
    assert np.abs(unseen - run(pipe, "clay")).max() > 0
    # without adapters, weights are an error with the fix
    plain = load_pipeline(folder, device="cpu", adapters="none")
    with pytest.raises(ValueError, match="adapters"):
        run(plain, "painting", adapter_weights={"clay": 1.0})
    with pytest.raises(FileNotFoundError, match="adapter file"):
        load_pipeline(folder, device="cpu", adapters=tmp_path / "missing.safetensors")
