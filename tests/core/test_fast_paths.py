"""procseq.models.fast_paths: the remembered rotary tables (exact), the sigmoid-form GELU (within 5e-7)."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.transformers.transformer_flux import FluxPosEmbed

from procseq.models.fast_paths import CachedPosEmbed, cache_rotary_tables


def _ids(n: int, shift: float = 0.0) -> torch.Tensor:
    ids = torch.zeros(n, 3)
    ids[:, 1] = torch.arange(n) // 4 + shift
    ids[:, 2] = torch.arange(n) % 4
    return ids


def test_cached_tables_equal_flux_pos_embed_and_are_reused() -> None:
    stock, cached = FluxPosEmbed(10000, [4, 6, 6]), CachedPosEmbed(10000, [4, 6, 6], size=2)
    a, b, c = _ids(12), _ids(12, shift=1.0), _ids(20)
    for ids in (a, b, c, a.clone()):
        for got, want in zip(cached(ids), stock(ids)):
            assert torch.equal(got, want)
    first = cached(a)
    assert cached(a.clone())[0] is first[0]  # equal ids (a new tensor): the remembered table
    assert not torch.equal(cached(b)[0], first[0])  # same shape, other values: its own table
    cached(c)  # size 2: a is now the oldest of three and is forgotten
    assert cached(a)[0] is not first[0] and torch.equal(cached(a)[0], first[0])


def test_tables_from_inference_mode_are_not_reused_with_autograd() -> None:
    cached, ids = CachedPosEmbed(10000, [4, 6, 6]), _ids(12)
    with torch.inference_mode():
        made = cached(ids)
        assert cached(ids)[0] is made[0]
    outside = cached(ids)
    assert outside[0] is not made[0] and not outside[0].is_inference()
    weight = torch.ones(12, 16, requires_grad=True)
    (weight * outside[0]).sum().backward()  # usable in a graph (an inference tensor would raise here)
    assert cached(ids)[0] is outside[0]


def test_cached_tables_do_not_change_the_transformer() -> None:
    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                   num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                   axes_dims_rope=[4, 4, 8]).eval()
    inputs = dict(hidden_states=torch.randn(1, 16, 4), encoder_hidden_states=torch.randn(1, 5, 32),
                  pooled_projections=torch.randn(1, 32), txt_ids=torch.zeros(5, 3), img_ids=_ids(16),
                  return_dict=False)
    with torch.no_grad():
        want = [model(timestep=torch.tensor([t]), **inputs)[0] for t in (0.9, 0.5)]
        assert cache_rotary_tables(model) is cache_rotary_tables(model)  # idempotent
        assert isinstance(model.pos_embed, CachedPosEmbed)
        got = [model(timestep=torch.tensor([t]), **inputs)[0] for t in (0.9, 0.5)]
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    model.pos_embed = torch.nn.Identity()
    with pytest.raises(ValueError, match="FluxPosEmbed"):
        cache_rotary_tables(model)


def test_loaded_pipelines_remember_their_rotary_tables(tiny_pipe) -> None:
    # (that the grid stays bit for bit stock FluxPipeline's with it: tests/core/test_pipeline.py)
    assert isinstance(tiny_pipe.transformer.pos_embed, CachedPosEmbed)


def test_sigmoid_gelu_is_the_tanh_gelu_and_switches_back() -> None:
    from diffusers.models.attention import FeedForward

    from procseq.models.fast_paths import SigmoidGELU, gelu_tanh_by_sigmoid, sigmoid_gelu

    x = torch.randn(4, 64) * 4
    want = torch.nn.functional.gelu(x, approximate="tanh")
    with torch.no_grad():
        assert torch.allclose(gelu_tanh_by_sigmoid(x), want, atol=2e-6, rtol=0)
    y = x.clone().requires_grad_()
    gelu_tanh_by_sigmoid(y).sum().backward()  # with a gradient: out of place, differentiable
    ref = x.clone().requires_grad_()
    torch.nn.functional.gelu(ref, approximate="tanh").sum().backward()
    assert torch.allclose(y.grad, ref.grad, atol=2e-6)

    torch.manual_seed(0)
    model = torch.nn.Sequential(FeedForward(16, activation_fn="gelu-approximate"), torch.nn.GELU(approximate="tanh"),
                                torch.nn.GELU())  # an exact GELU is not switched
    h = torch.randn(2, 5, 16)
    with torch.no_grad():
        stock_out, state = model(h), {k: v.clone() for k, v in model.state_dict().items()}
        half = copy.deepcopy(model).to(torch.bfloat16)
        stock_bf16 = half(h.bfloat16())
        proj = model[0].net[0].proj
        assert sigmoid_gelu(model) == 2
        assert type(model[1]) is SigmoidGELU and type(model[2]) is torch.nn.GELU
        assert model[0].net[0].proj is proj and model.state_dict().keys() == state.keys()
        fast_out = model(h)
        assert torch.allclose(fast_out, stock_out, atol=1e-5)
        sigmoid_gelu(half)
        assert torch.equal(half(h.bfloat16()), stock_bf16)  # half precision: the stock kernels
        assert sigmoid_gelu(model, on=False) == 2 and torch.equal(model(h), stock_out)
