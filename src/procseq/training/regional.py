"""``procseq train regional``: the regional LoRA (CookAnything's trained mode) on a frozen base.

For a base that never learnt the regional layout (FLUX.1-dev, procseq-tiny v2), a peft LoRA (adapter
``"regional"``, diffusers naming) is fitted to exactly what the regional layout feeds: every frame encoded alone,
laid out as regions, the prompt then the step captions, the step-wise mask blended with the global pass
(:mod:`procseq.layouts.regional`). It is the layouts trainer (:mod:`procseq.training.layouts`) with every sequence
in the regional layout and that LoRA as the only trained weights. The LoRA is only active inside a regional
generation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from procseq.training.config import LayoutsConfig, RegionalTrainConfig, RunConfig


def regional_config(cfg: RunConfig, rc: RegionalTrainConfig | None = None) -> RunConfig:
    """`cfg` with its ``layouts`` section set to train the regional LoRA (settings from `rc`, default ``cfg.regional``)."""
    rc = rc or cfg.regional
    layouts = LayoutsConfig(weights={"regional": 1.0}, lora="regional", per_domain=rc.per_domain,
                            step_tokens=cfg.layouts.step_tokens, cache_dir=rc.cache_dir)
    return replace(cfg, regional=rc, layouts=layouts)


def run_regional_training(cfg: RunConfig, rc: RegionalTrainConfig | None = None, progress: bool = True) -> Any:
    """Train the regional LoRA on ``cfg.data`` (the first ``rc.per_domain`` sequences per domain) over the frozen
    ``cfg.model.path``; writes ``OUTPUT_DIR/model`` (weights + ``regional.json``) with its training record."""
    from procseq.training.layouts import run_layout_training

    if not cfg.model.path:
        raise ValueError("The regional LoRA needs a base model: set model.path (e.g. procseq-tiny).")
    return run_layout_training(regional_config(cfg, rc), progress=progress)


__all__ = ["RegionalTrainConfig", "regional_config", "run_regional_training"]
