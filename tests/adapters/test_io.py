"""Adapter files: save/load round trip, plain-LoRA export loaded by stock FluxPipeline, kohya import."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from safetensors import safe_open
from safetensors.torch import save_file

from procseq.adapters import (
    AsymmetricLoRAConfig, MaskedLoRAConfig, adapter_layers, add_asymmetric_lora, add_masked_lora, domains, route,
)
from procseq.adapters.io import export_domain, import_kohya_asymmetric, load_adapters, save_adapters
from tests.adapters.micro import flux_inputs, micro_transformer, randomize_adapters


def run(model, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(**flux_inputs(**kw))[0]


@pytest.mark.parametrize("kind", ["asymmetric", "masked"])
def test_save_load_round_trip(tmp_path, kind: str) -> None:
    model = micro_transformer()
    if kind == "asymmetric":
        add_asymmetric_lora(model, ["lego", "clay"], AsymmetricLoRAConfig(rank=4, alpha=2))
    else:
        add_masked_lora(model, ["lego", "clay"], MaskedLoRAConfig(rank=10, alpha=2))
    randomize_adapters(model)
    path = save_adapters(model, tmp_path / "adapters.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), json.loads(f.metadata()["procseq_adapter"])
    assert meta["kind"] == kind and meta["rank"] == model.transformer_blocks[0].attn.to_q.rank
    assert meta["domains"] == ["lego", "clay"] and meta["alpha"] == 2.0
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in keys
    b_key = "lora_B.clay.weight" if kind == "asymmetric" else "lora_B.weight"
    assert f"transformer.single_transformer_blocks.0.proj_mlp.{b_key}" in keys
    fresh = micro_transformer()  # same base weights (seed), no adapters
    assert load_adapters(fresh, path) == ["lego", "clay"]
    assert sorted(adapter_layers(fresh)) == sorted(adapter_layers(model))
    for spec in [dict(domains=["clay", "lego"]), dict(weights={"lego": 0.4, "clay": 0.6})]:
        with route(model, **spec):
            expected = run(model)
        with route(fresh, **spec):
            assert torch.equal(run(fresh), expected)


def _stock_transformer_out(pipe: FluxPipeline, model_inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return pipe.transformer(**model_inputs)[0]


@pytest.mark.parametrize("kind", ["asymmetric", "masked"])
def test_exported_domain_loads_in_stock_flux_pipeline(tiny_model_dir, tmp_path, kind: str) -> None:
    ours = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer").eval()
    if kind == "asymmetric":
        add_asymmetric_lora(ours, ["lego", "clay"], AsymmetricLoRAConfig(rank=4, alpha=8))
    else:
        add_masked_lora(ours, ["lego", "clay"], MaskedLoRAConfig(rank=10, alpha=5))
    randomize_adapters(ours, std=0.2)
    c = ours.config
    model_inputs = flux_inputs(batch=1, in_channels=c.in_channels, text_dim=c.joint_attention_dim,
                               pooled_dim=c.pooled_projection_dim)
    pipe = FluxPipeline.from_pretrained(tiny_model_dir)
    base = _stock_transformer_out(pipe, model_inputs)
    for i, spec in enumerate(["clay", {"lego": 0.7, "clay": 0.3}]):
        with route(ours, **({"domains": spec} if isinstance(spec, str) else {"weights": spec})), torch.no_grad():
            expected = ours(**model_inputs)[0]
        path = export_domain(ours, spec, tmp_path / f"{kind}{i}.safetensors")
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
        assert all(k.startswith("transformer.") and k.endswith(("lora_A.weight", "lora_B.weight")) for k in keys)
        pipe.load_lora_weights(str(path))  # stock loader, default adapter settings
        got = _stock_transformer_out(pipe, model_inputs)
        pipe.unload_lora_weights()
        assert not torch.allclose(got, base, atol=1e-3)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _kohya_file(path, transformer, rank: int, alpha: float, n_ups: int, seed: int = 0) -> dict:
    """A synthetic MakeAnything file for `transformer`: fused qkv in double and single blocks."""
    g = torch.Generator().manual_seed(seed)
    inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    mlp = transformer.single_transformer_blocks[0].proj_mlp.out_features
    shapes = {"double_blocks_0_img_attn_qkv": (inner, 3 * inner), "double_blocks_0_img_attn_proj": (inner, inner),
              "double_blocks_0_txt_attn_qkv": (inner, 3 * inner), "double_blocks_0_txt_attn_proj": (inner, inner),
              "double_blocks_0_img_mlp_0": (inner, 4 * inner),
              "single_blocks_0_linear1": (inner, 3 * inner + mlp), "single_blocks_0_linear2": (inner + mlp, inner)}
    sd = {}
    for name, (fan_in, fan_out) in shapes.items():
        sd[f"lora_unet_{name}.lora_down.weight"] = torch.randn(rank, fan_in, generator=g) * 0.3
        for k in range(n_ups):
            sd[f"lora_unet_{name}.lora_ups.{k}.weight"] = torch.randn(fan_out, rank, generator=g) * 0.3
        sd[f"lora_unet_{name}.alpha"] = torch.tensor(alpha if name != "double_blocks_0_img_mlp_0" else 2 * alpha)
    save_file(sd, str(path))
    return sd


def test_kohya_import_matches_merged_weights(tmp_path) -> None:
    model, reference = micro_transformer(), micro_transformer()
    sd = _kohya_file(tmp_path / "asylora.safetensors", model, rank=4, alpha=2.0, n_ups=2)
    paths = import_kohya_asymmetric(model, tmp_path / "asylora.safetensors", domains=["lego", "clay"])
    assert len(paths) == 14 and domains(model) == ["lego", "clay"]
    assert "transformer_blocks.0.ff.net.0.proj" in paths and "single_transformer_blocks.0.proj_mlp" in paths
    mapping = {"double_blocks_0_img_attn_qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                                "transformer_blocks.0.attn.to_v"],
               "double_blocks_0_img_attn_proj": ["transformer_blocks.0.attn.to_out.0"],
               "double_blocks_0_txt_attn_qkv": ["transformer_blocks.0.attn.add_q_proj",
                                                "transformer_blocks.0.attn.add_k_proj",
                                                "transformer_blocks.0.attn.add_v_proj"],
               "double_blocks_0_txt_attn_proj": ["transformer_blocks.0.attn.to_add_out"],
               "double_blocks_0_img_mlp_0": ["transformer_blocks.0.ff.net.0.proj"],
               "single_blocks_0_linear1": [f"single_transformer_blocks.0.{m}" for m in
                                           ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")],
               "single_blocks_0_linear2": ["single_transformer_blocks.0.proj_out"]}
    k = 1  # domain "clay": merge lora_ups.1 into the reference's (unfused) weights
    with torch.no_grad():
        for name, targets in mapping.items():
            down, up = sd[f"lora_unet_{name}.lora_down.weight"], sd[f"lora_unet_{name}.lora_ups.{k}.weight"]
            delta = up @ down * float(sd[f"lora_unet_{name}.alpha"]) / 4
            dims = [reference.get_submodule(t).out_features for t in targets]
            for t, d in zip(targets, torch.split(delta, dims, dim=0)):
                reference.get_submodule(t).weight += d
    with route(model, domains="clay"):
        torch.testing.assert_close(run(model), run(reference), atol=1e-5, rtol=1e-5)
    with route(model, domains="lego"):
        assert not torch.allclose(run(model), run(reference), atol=1e-3)


def test_bad_files_raise(tmp_path) -> None:
    model = micro_transformer()
    with pytest.raises(FileNotFoundError):
        load_adapters(model, tmp_path / "missing.safetensors")
    _kohya_file(tmp_path / "k.safetensors", model, rank=4, alpha=4.0, n_ups=3)
    with pytest.raises(ValueError, match="not a procseq multi-domain adapter"):
        load_adapters(model, tmp_path / "k.safetensors")
    with pytest.raises(ValueError, match="pass domains=.* with 3 names"):
        import_kohya_asymmetric(model, tmp_path / "k.safetensors", domains=["lego"])
    save_file({"lora_unet_txt_in.lora_down.weight": torch.zeros(2, 2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="outside the supported kohya"):
        import_kohya_asymmetric(model, tmp_path / "bad.safetensors", domains=["lego"])
    big = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
                                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                 axes_dims_rope=[2, 2, 4])
    with pytest.raises(ValueError, match="another model size"):
        import_kohya_asymmetric(big, tmp_path / "k.safetensors", domains=["a", "b", "c"])
    add_asymmetric_lora(model, ["lego"], AsymmetricLoRAConfig(rank=4))
    with pytest.raises(ValueError, match="Unknown domain"):
        export_domain(model, "clay", tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="sum to 1"):
        export_domain(model, {"lego": 2.0}, tmp_path / "x.safetensors")
