"""The shipped frame-by-frame weights: found beside procseq-tiny, loaded in frame-by-frame mode only."""

from __future__ import annotations

import json

import torch

from procseq.models.loading import resolve_model

from procseq.pipelines.loading import load_pipeline
from procseq.layouts import frame_by_frame as fbf


def test_shipped_weights_load_and_run() -> None:
    folder = fbf.default_weights(resolve_model("procseq-tiny"))
    assert folder is not None and (folder / "training" / "log.jsonl").is_file()
    meta = json.loads((folder / fbf.META_FILE).read_text())
    assert meta["rotation_offset"] and meta["k"] == 2
    pipe = load_pipeline("procseq-tiny", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a blue LEGO tower", domain="lego", frames=5, mode="frame-by-frame", num_inference_steps=2,
               generator=torch.Generator().manual_seed(0))
    assert out.metadata[0]["frame_by_frame_weights"] == str(folder) and out.metadata[0]["step_embedding"]
    assert fbf.load_weights(pipe).embedding.table.shape == (meta["num_positions"], pipe.transformer.config.in_channels)
