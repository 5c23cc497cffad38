"""ProcessMaker's row mask (output rows, fixed or learned), per-layer rank/alpha, frozen A, files and export."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel

from procseq.adapters import (
    MaskedLoRAConfig, MaskedLoRALinear, adapter_layers, add_masked_lora, route, trainable_parameters,
)
from procseq.adapters.io import export_domain, load_adapters, save_adapters
from procseq.adapters.routing import resolve_routing
from procseq.training.config import RunConfig
from tests.adapters.micro import flux_inputs, micro_transformer, randomize_adapters

ROWS = {"fixed": MaskedLoRAConfig(rank=4, alpha=4, mask="rows"),
        "learned": MaskedLoRAConfig(rank=4, alpha=4, mask="rows", row_mask="learned")}


def layer(row_mask: str, out: int = 20, seed: int = 0) -> MaskedLoRALinear:
    torch.manual_seed(seed)
    m = MaskedLoRALinear(torch.nn.Linear(12, out), rank=4, max_domains=2, domains=["a", "b"], mask="rows",
                         row_mask=row_mask)
    with torch.no_grad():
        m.lora_B.weight.normal_()
        if m.lora_row_logits is not None:  # scatter the learned ownership away from the fixed blocks
            m.lora_row_logits.normal_()
    return m


def test_fixed_rows_first_thirty_percent_are_domain_blocks() -> None:
    m = MaskedLoRALinear(torch.nn.Linear(12, 20), rank=4, max_domains=2, domains=["a", "b"], mask="rows")
    assert (m.shared_rows, m.block) == (14, 3)  # round(0.3 * 20) = 6 rows -> 2 blocks of 3
    assert m.domain_rows("a") == slice(0, 3) and m.domain_rows("b") == slice(3, 6)
    coef = m.row_coefficients(torch.tensor([[0.25, 0.75], [0.0, 0.0]]))
    assert coef[0, :3].eq(0.25).all() and coef[0, 3:6].eq(0.75).all() and coef[0, 6:].eq(1).all()
    assert coef[1, :6].eq(0).all() and coef[1, 6:].eq(1).all()  # unseen: the shared rows only


@pytest.mark.parametrize("row_mask", ["fixed", "learned"])
def test_a_domain_rows_get_no_gradient_from_another_domain(row_mask: str) -> None:
    m = layer(row_mask)
    own_a, own_b = m.owned_rows("a"), m.owned_rows("b")
    assert len(own_a) == len(own_b) == m.block and not set(own_a.tolist()) & set(own_b.tolist())
    x = torch.randn(2, 5, 12)
    m.set_routing(resolve_routing(["a", "b"], domains=["a", "b"]))
    m(x)[0].square().sum().backward()  # the loss of the sample routed to a only
    g = m.lora_B.weight.grad
    assert g[own_b].eq(0).all() and g[own_a].abs().sum() > 0 and g[m.shared_row_indices()].abs().sum() > 0
    if row_mask == "learned":
        assert m.lora_row_logits.grad is not None and m.lora_row_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("row_mask", ["fixed", "learned"])
def test_unseen_domain_gets_only_the_shared_rows(row_mask: str) -> None:
    m = layer(row_mask)
    x = torch.randn(3, 12)
    m.set_routing(resolve_routing(["a", "b"], domains="origami", unseen="shared"))
    with torch.no_grad():
        y = m(x)
        base = m.base(x)
        own = torch.cat([m.owned_rows("a"), m.owned_rows("b")])
        assert torch.equal(y[:, own], base[:, own])  # domain rows: the base alone
        shared = m.shared_row_indices()
        assert not torch.allclose(y[:, shared], base[:, shared])
        m.lora_B.weight[own] += 1.0  # what the domains own does not reach an unseen domain
        assert torch.equal(m(x), y)


def test_learned_ownership_starts_fixed_and_moves_with_the_logits() -> None:
    m = MaskedLoRALinear(torch.nn.Linear(12, 20), rank=4, max_domains=2, domains=["a", "b"], mask="rows",
                         row_mask="learned")
    assert m.owned_rows("a").tolist() == [0, 1, 2] and m.owned_rows("b").tolist() == [3, 4, 5]
    with torch.no_grad():
        m.lora_row_logits[1, 19] = 10.0
    assert 19 in m.owned_rows("b").tolist() and len(m.owned_rows("b")) == 3


@pytest.mark.parametrize("row_mask", ["fixed", "learned"])
def test_rows_files_round_trip_and_export_to_stock_flux(tiny_model_dir, tmp_path, row_mask: str) -> None:
    cfg = MaskedLoRAConfig(rank=4, alpha=4, mask="rows", row_mask=row_mask, alpha_pattern={r".*proj_mlp": 2.0},
                           rank_pattern={r"single_transformer_blocks\..*": 2})
    ours = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer").eval()
    add_masked_lora(ours, ["lego", "clay"], cfg)
    randomize_adapters(ours, std=0.2)
    layers = adapter_layers(ours)
    assert layers["single_transformer_blocks.0.proj_mlp"].rank == 2
    assert layers["single_transformer_blocks.0.proj_mlp"].scaling == 1.0  # alpha 2 / rank 2
    assert layers["transformer_blocks.0.attn.to_q"].rank == 4
    if row_mask == "learned":
        with torch.no_grad():
            for m in layers.values():
                m.lora_row_logits.normal_()
    path = save_adapters(ours, tmp_path / "adapters.safetensors")
    fresh = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer").eval()
    load_adapters(fresh, path)
    c = ours.config
    inputs = flux_inputs(batch=1, in_channels=c.in_channels, text_dim=c.joint_attention_dim,
                         pooled_dim=c.pooled_projection_dim)
    pipe = FluxPipeline.from_pretrained(tiny_model_dir)
    for i, spec in enumerate([{"domains": "clay"}, {"weights": {"lego": 0.7, "clay": 0.3}},
                              {"domains": "origami", "unseen": "shared"}]):
        with torch.no_grad():
            with route(ours, **spec):
                expected = ours(**inputs)[0]
            with route(fresh, **spec):
                assert torch.equal(fresh(**inputs)[0], expected)
        target = spec.get("domains", spec.get("weights"))
        out = export_domain(ours, target, tmp_path / f"{i}.safetensors", unseen=spec.get("unseen", "error"))
        pipe.load_lora_weights(str(out))
        with torch.no_grad():
            got = pipe.transformer(**inputs)[0]
        pipe.unload_lora_weights()
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_frozen_shared_a_is_not_trained() -> None:
    model = micro_transformer()
    add_masked_lora(model, ["lego", "clay"], ROWS["fixed"])
    params = trainable_parameters(model, ["lego", "clay"], train_shared=False)
    layers = adapter_layers(model)
    assert all(not m.lora_A.weight.requires_grad and m.lora_B.weight.requires_grad for m in layers.values())
    assert not any(p is m.lora_A.weight for p in params for m in layers.values())
    before = {n: m.lora_A.weight.clone() for n, m in layers.items()}
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    for _ in range(2):
        with route(model, domains=["lego", "clay"]):
            model(**flux_inputs())[0].square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(m.lora_A.weight, before[n]) for n, m in layers.items())
    assert any(m.lora_B.weight.abs().sum() > 0 for m in layers.values())


def test_bad_mask_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="mask must be"):
        MaskedLoRAConfig(mask="cols")
    with pytest.raises(ValueError, match="needs mask='rows'"):
        MaskedLoRAConfig(row_mask="learned")
    with pytest.raises(ValueError, match="rank_pattern key"):
        MaskedLoRAConfig(rank_pattern={"(": 4})
    with pytest.raises(ValueError, match="rank must be a positive"):
        MaskedLoRAConfig(rank_pattern={".*": 0})
    with pytest.raises(ValueError, match="adapter.kind=masked"):
        RunConfig.from_dict({"adapter": {"kind": "asymmetric", "mask": "rows"}})
    with pytest.raises(ValueError, match="adapter.mask=rows"):
        RunConfig.from_dict({"adapter": {"kind": "masked", "mask": "rank", "row_mask": "learned"}})
    with pytest.raises(ValueError, match="no row for each"):
        add_masked_lora(micro_transformer(), ["a", "b", "c", "d"], MaskedLoRAConfig(
            rank=4, mask="rows", domain_fraction=0.05))
