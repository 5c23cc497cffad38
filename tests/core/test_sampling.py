"""The Euler loop: batched true CFG equals two passes; prompts are encoded with only the tokens they need."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from procseq.attention.masks import RegionLayout, RegionMask
from procseq.layout import GridLayout, grid_position_ids
from procseq.layouts.sampling import can_batch_cfg, denoise, flux_timesteps


def gen(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def _inputs(pipe, prompts: list[str], negatives: list[str], length: int):
    cond, neg = pipe.encode_text(prompts, length), pipe.encode_text(negatives, length)
    layout = GridLayout.for_frames(4)
    h, w = layout.grid_size(16)
    latents, _ = pipe.prepare_latents(len(prompts), pipe.transformer.config.in_channels // 4, h, w,
                                      torch.float32, "cpu", gen(3), None)
    ids = grid_position_ids(layout, 16 // (pipe.vae_scale_factor * 2))
    return cond, neg, latents, ids


def run(pipe, latents, ids, cond, **kwargs) -> torch.Tensor:
    """One 4-step denoise (the scheduler's timesteps set afresh, as the pipeline does)."""
    ts = flux_timesteps(pipe.scheduler, 4, latents.shape[1], "cpu")
    return denoise(pipe.transformer, pipe.scheduler, latents, ids, cond, ts, **kwargs)


@pytest.mark.parametrize("prompts", [["a red circle"], ["a red circle", "a blue lego tower of three bricks"]])
def test_batched_cfg_equals_two_passes(tiny_pipe, prompts: list[str]) -> None:
    cond, neg, latents, ids = _inputs(tiny_pipe, prompts, [""] * len(prompts), 16)
    calls = []
    handle = tiny_pipe.transformer.register_forward_hook(lambda m, a, k, o: calls.append(k["hidden_states"].shape[0]),
                                                         with_kwargs=True)
    try:
        runs = {b: run(tiny_pipe, latents, ids, cond, negative=neg, true_cfg_scale=2.5, batch_cfg=b)
                for b in (False, True)}
    finally:
        handle.remove()
    n = len(prompts)
    assert calls == [n] * 8 + [2 * n] * 4  # two passes per step, then one batched pass per step
    torch.testing.assert_close(runs[True], runs[False], atol=1e-5, rtol=1e-4)
    assert not torch.equal(runs[False], run(tiny_pipe, latents, ids, cond))


def test_batching_needs_matching_text(tiny_pipe) -> None:
    cond, neg, latents, ids = _inputs(tiny_pipe, ["a red circle"], [""], 16)
    short = tiny_pipe.encode_text([""], 4)
    assert can_batch_cfg(cond, neg) and not can_batch_cfg(cond, short)
    calls = []
    handle = tiny_pipe.transformer.register_forward_hook(lambda m, a, k, o: calls.append(k["hidden_states"].shape[0]),
                                                         with_kwargs=True)
    region = RegionMask(RegionLayout.consecutive(cond.prompt_embeds.shape[1], [(0, 2)], latents.shape[1]))
    try:  # different lengths: two passes; a regional mask (the negative text has no step spans): two passes
        run(tiny_pipe, latents, ids, cond, negative=short, true_cfg_scale=2.0)
        run(tiny_pipe, latents, ids, cond, negative=neg, true_cfg_scale=2.0,
            joint_attention_kwargs=region.attention_kwargs(0.0))
        calls_apart = list(calls)
        calls.clear()  # other attention state (known-frame K/V, the step embedding) broadcasts: one batched pass
        run(tiny_pipe, latents, ids, cond, negative=neg, true_cfg_scale=2.0, joint_attention_kwargs={"scale": 1.0})
    finally:
        handle.remove()
    assert calls_apart == [1] * 16 and calls == [2] * 4


@pytest.mark.parametrize("case", ["known-concat", "known-inplace"])
def test_batched_cfg_with_known_frames_equals_two_passes(tiny_pipe, monkeypatch, case: str) -> None:
    """True CFG runs both branches in one batch with known frames too (their K/V broadcast), with the same output.
    (Frame by frame and regional keep two passes: their step text makes the negative branch's text shorter.)"""
    import procseq.layouts.sampling as sampling
    from PIL import Image

    kwargs = dict(prompt="a red circle", domain="painting", frames=4, num_inference_steps=2, true_cfg_scale=2.0,
                  output_type="latent")  # compared before decoding: a float difference would flip a pixel level
    kwargs.update(known={3: Image.new("RGB", (16, 16), (200, 30, 30))}, known_mode=case.split("-")[1])
    calls = []
    handle = tiny_pipe.transformer.register_forward_hook(lambda m, a, k, o: calls.append(k["hidden_states"].shape[0]),
                                                         with_kwargs=True)
    try:
        batched = tiny_pipe(**kwargs, generator=gen(3)).images
        assert 2 in calls  # the two branches went through together
        monkeypatch.setattr(sampling, "can_batch_cfg", lambda *a: False)
        apart = tiny_pipe(**kwargs, generator=gen(3)).images
    finally:
        handle.remove()
    torch.testing.assert_close(batched, apart, atol=1e-5, rtol=1e-4)


def test_text_padding_longest(tiny_model_dir, tiny_pipe) -> None:
    """With ``text_padding="longest"`` the prompt and the negative prompt get only the tokens the longer needs,
    and the grid is stock FluxPipeline's at that max_sequence_length."""
    prompt = "a red circle"
    assert tiny_pipe.text_length([prompt, ""]) == 16  # "max": FluxPipeline's padding
    old = tiny_pipe.defaults
    tiny_pipe.defaults = dataclasses.replace(old, text_padding="longest")
    try:
        n = tiny_pipe.text_length([prompt, ""])
        assert n == len(tiny_pipe.tokenizer_2(prompt).input_ids) < 16
        assert tiny_pipe.text_length(["a blue lego tower of three bricks", prompt]) > n
        ours = tiny_pipe(prompt, domain="painting", frames=4, num_inference_steps=3, generator=gen(7)).grid[0]
    finally:
        tiny_pipe.defaults = old
    stock = FluxPipeline.from_pretrained(tiny_model_dir)
    stock.set_progress_bar_config(disable=True)
    ref = stock(prompt, height=32, width=32, num_inference_steps=3, guidance_scale=3.5, max_sequence_length=n,
                generator=gen(7)).images[0]
    assert np.array_equal(np.asarray(ref), np.asarray(ours))
