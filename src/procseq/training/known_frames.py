"""``procseq train known-frames``: the condition LoRA, trained on random known subsets.

One LoRA serves every use of known frames (DESIGN.md #10): each batch draws which cells are known, from a mix of
the last cell (ReCraft), the first k (continuation), the two neighbours of a missing cell (interpolation) and random
sparse sets. Known frames are encoded **alone** by the VAE (as a user's pictures are); the loss covers the unknown
cells only. Half of the sequences are captioned with their prompt, half with the domain phrase alone (ReCraft's
text), so the LoRA works with and without a description. The base model is frozen.

It is the layouts trainer (:mod:`procseq.training.layouts`) with every sequence in the grid layout and the condition
LoRA as the trained weights (``concat``: on in the known frames' t = 0 pass, and in the main pass with ``main_lora``;
``inplace``: on in the main pass). This module keeps what is particular to it: its config and the prompt swap
(the known-set draw and the per-frame latent cache are :mod:`procseq.training.frame_data`'s).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from procseq.conditioning.lora import ADAPTER_NAME
from procseq.data.synthetic.base import stable_hash
from procseq.domain_prompt import domain_prompt, domain_prompts
from procseq.training.config import KnownFramesConfig, LayoutsConfig, RunConfig


def lora_meta(cfg: KnownFramesConfig) -> dict[str, Any]:
    """What ``known_frames.json`` records beside the weights."""
    return {"mode": cfg.mode, "rank": cfg.rank, "alpha": cfg.alpha, "targets": list(cfg.targets),
            "subsets": dict(cfg.subsets), "cut_fraction": cfg.cut_fraction, "main_lora": cfg.main_lora}


def add_seeded_condition_lora(transformer: Any, cfg: KnownFramesConfig, seed: int) -> None:
    """The condition LoRA (untrained) under a fixed seed, so a run (and its resume) is reproducible."""
    from procseq.training.layouts import add_seeded_lora

    add_seeded_lora(transformer, ADAPTER_NAME, cfg.rank, cfg.alpha, cfg.targets, seed)


def prompt_swap(domain_prefix: bool, step_count_prefix: bool) -> Any:
    """``prompt_for(i, row)``: half of the sequences (by a stable hash of their index) read the domain phrase alone,
    as ReCraft's pipeline sends it when the user gives no prompt; the others their own prompt."""
    def prompt_for(i: int, row: dict[str, Any]) -> str:
        if stable_hash("prompt", i) % 2 == 0:
            return row["prompt"]
        count = int(row["num_frames"]) if step_count_prefix else None
        return domain_prompts([domain_prompt(row["domain"])], row["domain"], domain_prefix, count)[0]

    return prompt_for


def known_frames_config(cfg: RunConfig) -> RunConfig:
    """`cfg` with its ``layouts`` section set to train the condition LoRA of ``cfg.known_frames``."""
    kf = cfg.known_frames
    if kf.cut_fraction > 0:
        raise ValueError("known_frames.cut_fraction is no longer trained (3-frame cuts swamped training); set it to 0: "
                         "sequences of 3 frames come from the corpus's own lengths (--lengths any).")
    layouts = LayoutsConfig(weights={"grid": 1.0}, lora=ADAPTER_NAME, known=dict(kf.subsets), known_mode=kf.mode,
                            step_tokens=cfg.layouts.step_tokens, cache_dir=kf.cache_dir)
    return replace(cfg, layouts=layouts)


def run_known_frames_training(cfg: RunConfig, progress: bool = True) -> Any:
    """Train the condition LoRA of ``cfg.known_frames`` on ``cfg.data`` over the frozen ``cfg.model.path``; writes
    ``OUTPUT_DIR/model`` (``pytorch_lora_weights.safetensors`` + ``known_frames.json``) with its training record."""
    from procseq.training.layouts import run_layout_training
    from procseq.training.run import prefix_flag, require_base_model

    require_base_model(cfg, "The condition LoRA")
    swap = prompt_swap(prefix_flag(cfg), prefix_flag(cfg, "step_count_prefix"))
    return run_layout_training(known_frames_config(cfg), progress=progress, prompt_for=swap)


__all__ = ["add_seeded_condition_lora", "known_frames_config", "lora_meta", "prompt_swap", "run_known_frames_training"]
