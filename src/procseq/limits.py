"""The ranges every number a user gives must lie in: one table for the command line and the batch lines.

``procseq generate --denoise-steps``, a batch line's ``"steps"`` and a step count read from an instruction ("in 12
steps") are checked by the same functions here, so the limits cannot drift apart. Every check raises a
``ValueError`` that names the option (``--denoise-steps``) or the field (``steps``) and the accepted range.
"""

from __future__ import annotations

import math
from typing import Any

MAX_PLAN_STEPS = 256
"""Most steps a plan or a frame-by-frame sequence may have (the grid and regional modes allow 64)."""
MAX_GRID_FRAMES = 64
MAX_DENOISE_STEPS = 1000
MAX_FRAME_SIZE = 1024
MAX_GRID_PIXELS = 2048 * 2048
MAX_GIF_MS = 60_000
MAX_SCALE = 100.0
"""Largest guidance / true-CFG scale (FLUX Fill uses 30; beyond 100 the frames saturate to black)."""
MAX_EXTEND = 256
MAX_COUNT_DIGITS = 6


def check_int(value: int | None, name: str, lo: int = 1, hi: int | None = None) -> None:
    """Refuse a whole number outside ``lo..hi`` (None means 'the default' and passes)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    if value < lo or (hi is not None and value > hi):
        upper = f" and <= {hi}" if hi is not None else ""
        raise ValueError(f"{name} must be >= {lo}{upper}, got {value}.")


def check_float(value: float | None, name: str, lo: float | None = None, hi: float | None = None) -> None:
    """Refuse a number that is NaN, infinite or outside ``lo..hi`` (None passes)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (f" and >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"{name} must be a finite number{bounds}, got {value}.")


def max_frames(mode: str | None) -> int:
    """The most frames `mode` may ask for: 256 frame by frame (one frame per pass), else 64."""
    return MAX_PLAN_STEPS if mode == "frame-by-frame" else MAX_GRID_FRAMES


def check_settings(prefix: str = "--", *, frames: int | None = None, steps: int | None = None,
                   frame_size: int | None = None, gif_ms: int | None = None, seed: int | None = None,
                   max_frames: int = MAX_GRID_FRAMES, **scales: float | None) -> None:
    """The range checks of every generating command and batch line.

    `prefix` is ``"--"`` for options (names read ``--true-cfg-scale``) and ``""`` for batch-line fields (names read
    ``true_cfg_scale``). `scales` (``guidance=..., true_cfg_scale=...``) must be finite, in ``0..MAX_SCALE``.
    """
    def name(key: str) -> str:
        return prefix + key.replace("_", "-") if prefix else key

    check_int(frames, name("frames"), 1, max_frames)
    check_int(steps, name("denoise_steps") if prefix else "steps", 1, MAX_DENOISE_STEPS)  # the option's current name
    check_int(gif_ms, name("gif_ms"), 1, MAX_GIF_MS)
    check_int(frame_size, name("frame_size"), 1, MAX_FRAME_SIZE)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**64):
        raise ValueError(f"{name('seed')} must be a whole number that fits in 64 bits (0 to {2**64 - 1}), got {seed}.")
    if frame_size is not None and frames is not None:
        side = math.ceil(math.sqrt(frames)) * frame_size
        if side * side > MAX_GRID_PIXELS:
            raise ValueError(f"{frames} frames of {frame_size} px make a {side}x{side} grid, over the "
                             f"{MAX_GRID_PIXELS // 1_000_000} megapixel limit; lower {name('frame_size')} or "
                             f"{name('frames')}.")
    for key, value in scales.items():
        check_float(value, name(key), 0.0, MAX_SCALE)


def check_mix(mix: Any, name: str = "adapter_mix") -> dict[str, float] | None:
    """An adapter mix ``{"lego": 0.7, "clay": 0.3}``: domain names to finite weights >= 0 (None passes)."""
    if mix is None:
        return None
    if not isinstance(mix, dict) or not mix:
        raise ValueError(f"{name} must map domains to weights, e.g. {{\"lego\": 0.7, \"clay\": 0.3}}.")
    for key, weight in mix.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{name} has an empty domain name; write domain: weight pairs.")
        check_float(weight, f"{name}[{key!r}]", 0.0)
    return mix


def step_count(text: str, what: str = "The step count") -> int:
    """A step count written as digits (``"12"``, ``"-3"``) -> int in ``1..MAX_PLAN_STEPS``, checked before any
    conversion of a long digit string (so ``"in 50000000000 steps"`` costs nothing)."""
    digits = text.strip().lstrip("+-")
    if not digits.isdigit():
        raise ValueError(f"{what} {text!r} is not a whole number.")
    negative = text.strip().startswith("-")
    value = int(digits) if len(digits.lstrip("0")) <= MAX_COUNT_DIGITS else MAX_PLAN_STEPS + 1
    value = -value if negative else value
    if not 1 <= value <= MAX_PLAN_STEPS:
        shown = text.strip() if len(text.strip()) <= 20 else text.strip()[:20] + "..."
        raise ValueError(f"{what} {shown} is outside 1..{MAX_PLAN_STEPS}; ask for at most {MAX_PLAN_STEPS} steps.")
    return value


__all__ = ["MAX_DENOISE_STEPS", "MAX_EXTEND", "MAX_FRAME_SIZE", "MAX_GIF_MS", "MAX_GRID_FRAMES", "MAX_GRID_PIXELS",
           "MAX_PLAN_STEPS", "MAX_SCALE", "check_float", "check_int", "check_mix", "check_settings", "max_frames",
           "step_count"]
