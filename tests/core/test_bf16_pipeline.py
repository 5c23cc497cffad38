"""bf16 end to end on every layout, with known frames: the pipeline's transformer sees bfloat16 inputs only
(no float32 activation reaches it), the adapters included, and the frames come out finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from procseq.pipelines.loading import load_pipeline


@pytest.fixture(scope="module")
def bf16_pipe(tiny_model_dir):
    pipe = load_pipeline(tiny_model_dir, dtype="bfloat16", device="cpu", adapters="none")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("mode", ["grid", "regional", "frame-by-frame"])
@pytest.mark.parametrize("known_mode", ["concat", "inplace"])
def test_every_layout_runs_in_bf16_with_known_frames(bf16_pipe, mode, known_mode) -> None:
    seen: list[torch.dtype] = []

    def record(module, args, kwargs):
        seen.extend(v.dtype for k, v in kwargs.items()
                    if isinstance(v, torch.Tensor) and v.is_floating_point() and k not in ("img_ids", "txt_ids"))

    handle = bf16_pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        given = Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8))
        out = bf16_pipe("a red circle painted on white paper", domain="painting", frames=4, num_inference_steps=2,
                        generator=torch.Generator().manual_seed(0), mode=mode, known={3: given},
                        known_mode=known_mode, output_type="np")
    finally:
        handle.remove()
    assert bf16_pipe.transformer.dtype == torch.bfloat16
    assert seen and set(seen) == {torch.bfloat16}
    assert np.isfinite(np.asarray(out.frames[0])).all()
