"""The shipped procseq-tiny: stock FluxPipeline loads it, ProcessPipeline agrees with it, metadata is sane."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from procseq.data.synthetic.base import domains_with_role
from procseq.domain_prompt import with_domain
from procseq.models.loading import EMBEDDED_DIR, resolve_model
from procseq.pipelines.loading import load_pipeline


@pytest.fixture(scope="module")
def embedded():
    return load_pipeline(None, device="cpu")


def test_folder_is_complete_and_small() -> None:
    assert resolve_model(None) == str(EMBEDDED_DIR)
    meta = json.loads((EMBEDDED_DIR / "procseq.json").read_text())
    assert meta["frame_size"] == 32 and meta["max_frames"] == 16  # v2: 3..16 steps, grids up to 4x4
    assert meta["domain_prefix"] and meta["step_count_prefix"]  # the domain (and count) reach the model
    assert sorted(meta["domains"]) == sorted(domains_with_role("base"))
    size = sum(p.stat().st_size for p in EMBEDDED_DIR.rglob("*") if p.is_file())
    assert size < 60 * 2**20
    assert not list(EMBEDDED_DIR.rglob("*.bin")) and not list(EMBEDDED_DIR.rglob("*.pt"))  # safetensors only
    for name in ("loss.png", "config.yaml", "log.jsonl"):
        assert (EMBEDDED_DIR / "training" / name).is_file()


def test_stock_flux_pipeline_and_process_pipeline_agree(embedded) -> None:
    stock = FluxPipeline.from_pretrained(EMBEDDED_DIR)
    stock.set_progress_bar_config(disable=True)
    embedded.set_progress_bar_config(disable=True)
    # the model was trained on prompts with the domain phrase and step count in front; the pipeline writes
    # them so, stock FluxPipeline is handed the written prompt
    prompt = with_domain("a red house with a yellow sun", "painting", 9)
    length = embedded.text_length([prompt, ""])  # the T5 tokens the pipeline encodes with (procseq.json text_padding)
    ref = stock(prompt, height=96, width=96, num_inference_steps=4, max_sequence_length=length,
                generator=torch.Generator().manual_seed(0)).images[0]
    ours = embedded("a red house with a yellow sun", domain="painting", frames=9, num_inference_steps=4, true_cfg_scale=1.0,
                    generator=torch.Generator().manual_seed(0)).grid[0]
    assert ref.size == ours.size == (96, 96)
    assert np.array_equal(np.asarray(ref), np.asarray(ours))
    # the model's default true CFG (empty negative prompt) is stock FluxPipeline's true CFG; both branches run in
    # one batched forward here (two in stock), so pixels may differ by float rounding only
    assert embedded.defaults.true_cfg_scale == 2.0
    ref = stock(prompt, negative_prompt="", true_cfg_scale=2.0, height=96, width=96, num_inference_steps=4,
                max_sequence_length=length, generator=torch.Generator().manual_seed(0))
    ours = embedded("a red house with a yellow sun", domain="painting", frames=9, num_inference_steps=4,
                    generator=torch.Generator().manual_seed(0))
    assert ours.metadata[0]["true_cfg_scale"] == 2.0
    diff = np.abs(np.asarray(ref.images[0]).astype(int) - np.asarray(ours.grid[0]).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_defaults_come_from_the_folder(embedded) -> None:
    out = embedded("a blue lego tower", domain="lego", generator=torch.Generator().manual_seed(1))
    assert len(out.frames[0]) == 9 and out.frames[0][0].size == (32, 32)
    assert out.metadata[0]["num_inference_steps"] == embedded.defaults.num_inference_steps
    with pytest.raises(ValueError, match="Unknown domain"):
        embedded("a pink crane", domain="origami")  # never trained on: not a domain of the base model


def test_the_domain_decides_the_frames(embedded) -> None:
    """--domain reaches the model: the same prompt and seed give different frames in two domains."""
    prompt = "a red star on the right, a night sky above snowy ground"
    a, b = (embedded(prompt, domain=d, frames=9, generator=torch.Generator().manual_seed(0)).grid[0]
            for d in ("painting", "lego"))
    assert np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).mean() > 5


@pytest.mark.parametrize("frames, side", [(3, 64), (12, 128), (16, 128)])
def test_any_length_on_the_shipped_model(embedded, frames: int, side: int) -> None:
    out = embedded("a green and blue lego tower", domain="lego", frames=frames, generator=torch.Generator().manual_seed(0))
    assert len(out.frames[0]) == frames and out.grid[0].size[0] == side
