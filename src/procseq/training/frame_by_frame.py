"""``procseq train frame-by-frame``: the frame-by-frame LoRA and Loom's step embedding, on a frozen base.

Each batch trains one frame ``t`` of every sequence exactly as the frame-by-frame layout generates it
(:mod:`procseq.layouts.frame_by_frame`): its own tokens at the last cell of an ``h + 1`` grid, the text, the step
embedding at its progress, and its history (Loom's sparse sampling, ``K`` from ``k_choices``, the rotation offset) as
clean known frames in the t = 0 condition pass, each with its own step embedding; with probability
``history_dropout`` there is none, with ``caption_dropout`` the step caption is left out. It is the layouts trainer
(:mod:`procseq.training.layouts`) with every sequence in the frame-by-frame layout, the LoRA (on in both passes) and
the step embedding as the trained weights.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from procseq.training.config import LayoutsConfig, RunConfig


def frame_by_frame_config(cfg: RunConfig) -> RunConfig:
    """`cfg` with its ``layouts`` section set to train the frame-by-frame LoRA and step embedding."""
    fc = cfg.frame_by_frame
    layouts = LayoutsConfig(weights={"frame-by-frame": 1.0}, lora="frame_by_frame", step_embedding=True,
                            per_domain=fc.sequences_per_domain, step_tokens=cfg.layouts.step_tokens,
                            cache_dir=fc.cache_dir)
    return replace(cfg, layouts=layouts)


def run_frame_by_frame_training(cfg: RunConfig, progress: bool = True) -> Any:
    """Train the frame-by-frame LoRA and step embedding of ``cfg.frame_by_frame`` over the frozen ``cfg.model.path``;
    writes ``OUTPUT_DIR/model`` (the folder :func:`procseq.layouts.frame_by_frame.load_weights` reads)."""
    from procseq.training.layouts import run_layout_training
    from procseq.training.run import require_base_model

    require_base_model(cfg, "Frame-by-frame training")
    return run_layout_training(frame_by_frame_config(cfg), progress=progress)


__all__ = ["frame_by_frame_config", "run_frame_by_frame_training"]
