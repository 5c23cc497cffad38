"""Masked LoRA bands: ProcessMaker's per-domain rows (each domain its own ~30 %) and the old split band,
which every adapter file written before the option keeps."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from procseq.adapters import MaskedLoRAConfig, MaskedLoRALinear, adapter_layers, add_masked_lora, route
from procseq.adapters.io import METADATA_KEY, adapter_file_info, load_adapters, save_adapters
from procseq.adapters.masked import masked_layout
from procseq.training.config import RunConfig
from tests.adapters.micro import flux_inputs, micro_transformer, randomize_adapters


@pytest.mark.parametrize("mask", ["rank", "rows"])
def test_each_domain_owns_its_own_thirty_percent(mask: str) -> None:
    size = 20
    m = MaskedLoRALinear(torch.nn.Linear(12, size), rank=size, domains=["a", "b", "c"], mask=mask, band="per-domain")
    assert (m.shared_rows, m.block) == (2, 6)  # round(0.3 * 20) = 6 rows each, 20 - 18 shared
    rows = [set(range(size)[m.domain_rows(d)]) for d in "abc"]
    assert all(len(r) == 6 for r in rows) and not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    coef = m.row_coefficients(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert int(coef[0].sum()) == 6 + 2  # domain a: its own rows and the shared ones
    assert int(coef[1].sum()) == 2  # unseen: the shared rows only
    # the old split band: the same 30 % cut in three
    old = MaskedLoRALinear(torch.nn.Linear(12, size), rank=size, domains=["a", "b", "c"], mask=mask)
    assert old.band == "split" and (old.shared_rows, old.block) == (14, 2)


def test_per_domain_band_refuses_more_rows_than_there_are() -> None:
    assert masked_layout(100, 0.3, 3, band="per-domain") == (10, 30)
    with pytest.raises(ValueError, match="domain_fraction <= 0.25"):
        masked_layout(100, 0.3, 4, band="per-domain")
    with pytest.raises(ValueError, match="band must be"):
        MaskedLoRAConfig(band="overlap")


def test_per_domain_rows_get_no_gradient_from_another_domain() -> None:
    model = micro_transformer()
    add_masked_lora(model, ["lego", "clay"], MaskedLoRAConfig(rank=4, mask="rows", band="per-domain"))
    randomize_adapters(model)
    for layer in adapter_layers(model).values():
        layer.lora_B.weight.requires_grad_(True)
    with route(model, domains=["lego", "lego"]):
        model(**flux_inputs())[0].square().mean().backward()
    for layer in adapter_layers(model).values():
        assert layer.block == round(0.3 * layer.out_features)
        g = layer.lora_B.weight.grad
        assert g[layer.domain_rows("clay")].eq(0).all() and g[layer.domain_rows("lego")].abs().sum() > 0


def _outputs(model) -> list[torch.Tensor]:
    out = []
    with torch.no_grad():
        for spec in ({"domains": "clay"}, {"weights": {"lego": 0.6, "clay": 0.4}},
                     {"domains": "origami", "unseen": "shared"}):
            with route(model, **spec):
                out.append(model(**flux_inputs())[0])
    return out


@pytest.mark.parametrize("mask", ["rank", "rows"])
def test_an_old_file_without_band_loads_and_routes_as_before(tmp_path, mask: str) -> None:
    """A file written before the option (no "band" in its metadata) is the split band, exactly."""
    old = micro_transformer()
    add_masked_lora(old, ["lego", "clay"], MaskedLoRAConfig(rank=10, mask=mask))  # the v2 layout
    randomize_adapters(old)
    path = save_adapters(old, tmp_path / "new.safetensors")
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()[METADATA_KEY])
    assert info.pop("band") == "split"
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={METADATA_KEY: json.dumps(info)})
    assert "band" not in adapter_file_info(tmp_path / "old.safetensors")

    fresh = micro_transformer()
    load_adapters(fresh, tmp_path / "old.safetensors")
    layer = next(iter(adapter_layers(fresh).values()))
    assert layer.band == "split" and layer.shared_rows == next(iter(adapter_layers(old).values())).shared_rows
    for a, b in zip(_outputs(fresh), _outputs(old)):
        assert torch.equal(a, b)
    # a model with the per-domain layout refuses it instead of routing it wrongly
    other = micro_transformer()
    add_masked_lora(other, ["lego", "clay"], MaskedLoRAConfig(rank=10, mask=mask, band="per-domain"))
    with pytest.raises(ValueError, match="layouts differ"):
        load_adapters(other, tmp_path / "old.safetensors")


def test_a_per_domain_file_round_trips(tmp_path) -> None:
    model = micro_transformer()
    add_masked_lora(model, ["lego", "clay"], MaskedLoRAConfig(rank=4, mask="rows", band="per-domain"))
    randomize_adapters(model)
    path = save_adapters(model, tmp_path / "a.safetensors")
    assert adapter_file_info(path)["band"] == "per-domain"
    fresh = micro_transformer()
    load_adapters(fresh, path)
    for a, b in zip(_outputs(fresh), _outputs(model)):
        assert torch.equal(a, b)


def test_new_masked_trainings_default_to_processmaker_rows() -> None:
    masked = RunConfig.from_dict({"adapter": {"kind": "masked"}}).adapter
    assert (masked.mask, masked.band) == ("rows", "per-domain")
    kept = RunConfig.from_dict({"adapter": {"kind": "masked", "mask": "rank", "band": "split"}}).adapter
    assert (kept.mask, kept.band) == ("rank", "split")
    asym = RunConfig.from_dict({"adapter": {"kind": "asymmetric"}}).adapter
    assert asym.band is None and asym.mask is None
    with pytest.raises(ValueError, match="adapter.kind=masked"):
        RunConfig.from_dict({"adapter": {"kind": "asymmetric", "band": "per-domain"}})
    with pytest.raises(ValueError, match="adapter.band"):
        RunConfig.from_dict({"adapter": {"kind": "masked", "band": "half"}})
    from procseq.training.config import PRESET_DIR

    preset = RunConfig.from_yaml(PRESET_DIR / "adapters.yaml", ["adapter.kind=masked"]).adapter
    assert (preset.mask, preset.band) == ("rows", "per-domain")  # the preset's masked run: ProcessMaker's layout
