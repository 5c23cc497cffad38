"""Layouts (DESIGN.md #14): how a sequence's frames are arranged for the transformer, one module each.

``grid`` (MakeAnything's serpentine grid), ``regional`` (CookAnything's regions) and ``frame-by-frame`` (Loom).
Each is a :class:`~procseq.layouts.base.Layout` used by the pipeline and the trainer alike; :func:`make_layout`
builds one from its name.
"""

from __future__ import annotations

from typing import Any

from procseq.layouts.base import Layout
from procseq.layouts.frame_by_frame import FrameByFrame, FrameByFrameOptions
from procseq.layouts.grid import Grid, GridOptions
from procseq.layouts.regional import Regional, RegionalConfig
from procseq.sequence import MODES

LAYOUTS: dict[str, type[Layout]] = {"grid": Grid, "regional": Regional, "frame-by-frame": FrameByFrame}
assert tuple(LAYOUTS) == tuple(MODES), "procseq.sequence.MODES names the layouts (without importing torch)"


def make_layout(mode: str | Layout, options: Any = None) -> Layout:
    """The layout object for `mode` (a name of :data:`LAYOUTS`, or a layout already built), with `options` (its
    options dataclass: :class:`GridOptions`, :class:`RegionalConfig`, :class:`FrameByFrameOptions`)."""
    if isinstance(mode, Layout):
        return mode
    if mode not in LAYOUTS:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(LAYOUTS)}.")
    return LAYOUTS[mode](options)


__all__ = ["FrameByFrame", "FrameByFrameOptions", "Grid", "GridOptions", "LAYOUTS", "Layout", "Regional",
           "RegionalConfig", "make_layout"]
