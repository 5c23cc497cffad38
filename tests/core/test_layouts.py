"""The layout objects: step captions are model inputs in every layout, and training sees what sampling feeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from procseq.conditioning.plan import Plan
from procseq.layouts import LAYOUTS, FrameByFrame, FrameByFrameOptions, Grid, Regional, make_layout
from procseq.layouts.base import Draws, LayoutInputs

CAPTIONS = ["sketch the outline", "fill the red circle", "add the blue sky", "paint the sun"]


@pytest.fixture()
def step_text_pipe(tiny_pipe):
    """The micro pipeline as a model that reads padded step text (procseq.json ``step_tokens``)."""
    before = tiny_pipe.defaults
    tiny_pipe.defaults = dataclasses.replace(before, step_tokens=8)
    yield tiny_pipe
    tiny_pipe.defaults = before


def frames_of(pipe, captions: list[str], mode: str, **kw) -> list[np.ndarray]:
    out = pipe(plan=Plan("a red circle", "painting", captions), mode=mode, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="np", **kw)
    return list(out.frames[0])


@pytest.mark.parametrize("mode", list(LAYOUTS))
def test_editing_one_caption_changes_its_frame_in_every_layout(step_text_pipe, mode: str) -> None:
    edited = list(CAPTIONS)
    edited[2] = "add a green hill"
    a, b = frames_of(step_text_pipe, CAPTIONS, mode), frames_of(step_text_pipe, edited, mode)
    assert np.abs(a[2] - b[2]).max() > 1e-4, f"{mode}: caption 2 does not reach frame 2"
    again = frames_of(step_text_pipe, CAPTIONS, mode)
    assert all(np.array_equal(x, y) for x, y in zip(a, again))  # deterministic per seed


def test_frame_by_frame_without_the_plan_leaves_earlier_frames_alone(step_text_pipe) -> None:
    """Frame t reads caption t (and the whole plan only with ``plan=True``): editing caption 2 cannot change
    frames 0 and 1 when the plan is off."""
    edited = list(CAPTIONS)
    edited[2] = "add a green hill"
    opts = FrameByFrameOptions(plan=False)
    a = frames_of(step_text_pipe, CAPTIONS, "frame-by-frame", frame_by_frame=opts)
    b = frames_of(step_text_pipe, edited, "frame-by-frame", frame_by_frame=opts)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[2], b[2])


def test_a_model_without_step_text_reads_the_prompt_alone_in_the_grid(tiny_pipe) -> None:
    edited = list(CAPTIONS)
    edited[2] = "add a green hill"
    a, b = frames_of(tiny_pipe, CAPTIONS, "grid"), frames_of(tiny_pipe, edited, "grid")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_model_whose_grid_was_trained_on_the_prompt_alone(step_text_pipe) -> None:
    """procseq.json ``grid_step_text: false``: the grid reads the prompt alone, regional still reads the captions."""
    step_text_pipe.defaults = dataclasses.replace(step_text_pipe.defaults, grid_step_text=False)
    edited = list(CAPTIONS)
    edited[2] = "add a green hill"
    a, b = frames_of(step_text_pipe, CAPTIONS, "grid"), frames_of(step_text_pipe, edited, "grid")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    a, b = frames_of(step_text_pipe, CAPTIONS, "regional"), frames_of(step_text_pipe, edited, "regional")
    assert np.abs(a[2] - b[2]).max() > 1e-4


def test_make_layout_takes_names_and_objects() -> None:
    assert isinstance(make_layout("grid"), Grid) and isinstance(make_layout("regional"), Regional)
    fbf = FrameByFrame(FrameByFrameOptions(k=1))
    assert make_layout(fbf) is fbf
    with pytest.raises(ValueError, match="Unknown mode"):
        make_layout("sideways")


@pytest.mark.parametrize("mode", ["grid", "regional"])
def test_training_batch_uses_the_sampling_conditioning(step_text_pipe, mode: str) -> None:
    """A one-pass layout's training batch holds exactly the text and ids its sampling conditioning holds, and the
    loss skips the known cells."""
    from procseq.conditioning.frames import KnownFrames

    layout = make_layout(mode)
    n, ft = 4, 2
    plans = [Plan("a red circle", "painting", CAPTIONS)]
    lat = torch.randn(1, n, 4, 2 * ft, 2 * ft)
    known = KnownFrames((n - 1,), lat[:, [n - 1]])
    inputs = LayoutInputs(plans=plans, prompts=["a red circle"], frames=n, frame_tokens=ft, max_sequence_length=16,
                          step_tokens=8, known=known, known_mode="inplace")
    draws = Draws(torch.Generator().manual_seed(0), [torch.Generator().manual_seed(1)],
                  lambda g: float(torch.rand(1, generator=g)))
    batch = layout.training_example(step_text_pipe, inputs, lat, draws)
    cond = layout.prepare(step_text_pipe, inputs, "cpu", torch.float32)
    assert torch.equal(batch.text.prompt_embeds, cond.text.prompt_embeds)
    assert torch.equal(batch.img_ids, cond.img_ids)
    assert batch.loss_mask is not None and int((~batch.loss_mask).sum()) == ft * ft  # one known cell
    x_t = batch.x_t
    idx = known.token_index(cond.layout)
    assert torch.equal(x_t[:, idx], batch.x0[:, idx])  # known cells clean in the input


@pytest.mark.parametrize("mode", ["regional", "frame-by-frame"])
def test_true_cfg_batches_in_every_layout_with_padded_step_text(step_text_pipe, mode: str) -> None:
    """With padded step text the negative branch has the text shape of the positive one, so both run in one batch;
    the result equals two passes' within float rounding: the latents within 1e-5 (regional), the 8-bit frames
    within one level (frame by frame returns no latents; a 1e-7 difference can flip a pixel's rounding)."""
    calls = []
    hook = step_text_pipe.transformer.register_forward_pre_hook(lambda *_: calls.append(1))

    def run(batch_cfg):
        step_text_pipe.batch_cfg = batch_cfg
        calls.clear()
        try:
            out = step_text_pipe(plan=Plan("a red circle", "painting", CAPTIONS), mode=mode, num_inference_steps=2,
                                 true_cfg_scale=2.0, generator=torch.Generator().manual_seed(0),
                                 output_type="latent" if mode == "regional" else "np")
            return [np.asarray(out.images)] if mode == "regional" else list(out.frames[0]), len(calls)
        finally:
            step_text_pipe.batch_cfg = None

    try:
        (batched, batched_calls), (two, two_calls) = run(None), run(False)
    finally:
        hook.remove()
    assert batched_calls < two_calls  # one forward per step and frame instead of two
    tolerance = 1e-5 if mode == "regional" else 1 / 255 + 1e-6
    assert all(np.abs(a - b).max() <= tolerance for a, b in zip(batched, two))


def test_the_region_mask_reaches_the_sampler(tiny_pipe) -> None:
    """Regional sampling applies the step-wise mask: with it the frames differ from plain attention's (the per-step
    attention state must reach the processors, not only the training batch)."""
    from procseq.layouts import RegionalConfig

    def frames(config):
        return frames_of(tiny_pipe, CAPTIONS, "regional", regional=config)

    masked, plain = frames(RegionalConfig(blend=0.0, lora=False)), frames(RegionalConfig(mask=False, lora=False))
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(masked, plain))
    blended = frames(RegionalConfig(blend=0.5, lora=False))
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(masked, blended))
