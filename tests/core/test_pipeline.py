"""ProcessPipeline: shapes, determinism, equality with stock FluxPipeline, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from transformers import CLIPTokenizer, T5TokenizerFast

from procseq.layout import frames_to_grid
from procseq.models.loading import ModelDefaults, resolve_model
from procseq.pipelines.loading import load_pipeline
from procseq.models.tiny import build_clip_tokenizer, build_t5_tokenizer
from tests.conftest import TEXTS


def gen(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.mark.parametrize("frames", [2, 4, 7, 9])
def test_output_shapes(tiny_pipe, frames: int) -> None:
    out = tiny_pipe(["a red circle", "a blue lego tower"], domain="painting", frames=frames, generator=gen(0))
    assert len(out.frames) == len(out.captions) == len(out.grid) == 2
    for fs, caps, grid in zip(out.frames, out.captions, out.grid):
        assert len(fs) == len(caps) == frames
        assert all(f.size == (16, 16) for f in fs)
        rows, cols = out.metadata[0]["grid"]
        assert grid.size == (16 * cols, 16 * rows)
        assert np.array_equal(np.asarray(frames_to_grid(fs, rows, cols))[: 16 * (rows - 1)],
                              np.asarray(grid)[: 16 * (rows - 1)])
    assert out.metadata[0]["frames"] == frames and out.metadata[0]["timings_s"]["total"] > 0


def test_deterministic_per_seed(tiny_pipe) -> None:
    a = tiny_pipe("a red circle", domain="painting", frames=4, generator=gen(1)).grid[0]
    b = tiny_pipe("a red circle", domain="painting", frames=4, generator=gen(1)).grid[0]
    c = tiny_pipe("a red circle", domain="painting", frames=4, generator=gen(2)).grid[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("frames", [4, 9])
def test_grid_equals_stock_flux_pipeline(tiny_model_dir, tiny_pipe, frames: int) -> None:
    stock = FluxPipeline.from_pretrained(tiny_model_dir)
    stock.set_progress_bar_config(disable=True)
    size = 16 * int(np.ceil(np.sqrt(frames)))
    ref = stock("a red circle", height=size, width=size, num_inference_steps=3, guidance_scale=3.5,
                max_sequence_length=16, generator=gen(7)).images[0]
    ours = tiny_pipe("a red circle", domain="painting", frames=frames, num_inference_steps=3, guidance_scale=3.5,
                     generator=gen(7)).grid[0]
    assert np.array_equal(np.asarray(ref), np.asarray(ours))


def test_bf16_autocast_and_true_cfg_run(tiny_pipe) -> None:
    out = tiny_pipe("a red circle", domain="lego", frames=4, generator=gen(0), autocast_dtype=torch.bfloat16,
                    negative_prompt="blurry", true_cfg_scale=2.0)
    assert len(out.frames[0]) == 4


def test_captions_from_plan_or_given(tiny_pipe) -> None:
    out = tiny_pipe("a red circle", domain="painting", frames=4, generator=gen(0))
    # the offline planner writes the corpus's own painting steps, with the prompt's colour and object
    assert out.captions[0][0] == "sketch the outline of the circle in pencil"
    assert out.plans[0].num_steps == 4 and out.plans[0].domain == "painting" and out.plans[0].source == "corpus"
    assert "red circle" in out.plans[0].meta["matched_prompt"]  # the closest corpus spec: same colour and object
    given = [f"c{i}" for i in range(4)]
    assert tiny_pipe("x", domain="painting", frames=4, captions=given, generator=gen(0)).captions[0] == given


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prompt=""), "empty"),
        (dict(prompt="   "), "empty"),
        (dict(domain="opera"), "Unknown domain"),
        (dict(frames=1), "between 2 and 9"),
        (dict(frames=10), "between 2 and 9"),
        (dict(frame_size=12), "multiple of 8"),
        (dict(frames=4, captions=["a"]), "one caption per frame"),
    ],
)
def test_bad_input_raises(tiny_pipe, kwargs: dict, match: str) -> None:
    args = dict(prompt="a red circle", domain="painting", frames=9) | kwargs
    with pytest.raises(ValueError, match=match):
        tiny_pipe(**args)


def test_defaults_from_folder(tiny_model_dir, tmp_path) -> None:
    d = ModelDefaults.from_folder(tiny_model_dir)
    assert (d.frame_size, d.max_frames, d.num_inference_steps, d.domains) == (16, 9, 3, ("painting", "lego"))
    flux = ModelDefaults.from_folder(tmp_path)
    assert flux.frame_size == 512 and flux.frame_size_for(16) == 256


def test_resolve_model_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        resolve_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither"):
        resolve_model("./no/such/folder")
    assert resolve_model("black-forest-labs/FLUX.1-dev") == "black-forest-labs/FLUX.1-dev"


def test_bad_dtype_raises(tiny_model_dir) -> None:
    with pytest.raises(ValueError, match="Unknown dtype"):
        load_pipeline(tiny_model_dir, dtype="int3")


def test_tokenizers_survive_save_and_reload(tmp_path) -> None:
    clip = build_clip_tokenizer(TEXTS, 300, 16)
    t5 = build_t5_tokenizer(TEXTS, 200, 16)
    clip.save_pretrained(tmp_path / "clip")
    t5.save_pretrained(tmp_path / "t5")
    clip2 = CLIPTokenizer.from_pretrained(tmp_path / "clip")
    t52 = T5TokenizerFast.from_pretrained(tmp_path / "t5")
    for text in TEXTS + ["unseen words: zebra, 42!", "ÄÖ emoji 🙂"]:
        assert clip(text).input_ids == clip2(text).input_ids
        assert t5(text).input_ids == t52(text).input_ids
    assert clip2.model_max_length == t52.model_max_length == 16
    for tok in (clip2, t52):  # words do not collapse to one id, and text decodes back
        assert tok("red").input_ids != tok("blue").input_ids
        assert tok.decode(tok("a red circle").input_ids, skip_special_tokens=True) == "a red circle"
    assert clip2.decode(clip2("zebra quokka").input_ids, skip_special_tokens=True) == "zebra quokka"  # byte-level


def test_the_execution_device_is_looked_up_once_per_call(tiny_pipe, monkeypatch) -> None:
    """diffusers walks every component for the execution device; a generation reads it once (issue 30)."""
    from diffusers import FluxPipeline

    looked_up = []
    real = FluxPipeline._execution_device.fget
    monkeypatch.setattr(FluxPipeline, "_execution_device", property(lambda self: looked_up.append(1) or real(self)))
    out = tiny_pipe("a red circle", domain="painting", frames=4, num_inference_steps=2, mode="regional",
                    generator=torch.Generator().manual_seed(0))
    assert len(out.frames[0]) == 4 and len(looked_up) == 1 and tiny_pipe._pinned_device is None
