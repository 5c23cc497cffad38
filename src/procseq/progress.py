"""Visible progress of a generation: the plan, then one bar over the denoising steps of every pass.

Every layout denoises through :func:`procseq.layouts.sampling.denoise`, which calls :func:`denoise_step`
after each step, and every plan is made by ``ProcessPipeline.make_plans``, which calls :func:`plans_made`.
Both do nothing unless a caller (the command line, the app) opened :func:`show_progress`: the library never
prints on its own. Pure Python, no torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from procseq.quiet import NORMAL, VERBOSE, verbosity


class Progress:
    """One bar over the denoising steps of all passes (a grid: one pass; frame by frame: one per frame).

    `passes` is how many denoising loops are expected (None: unknown, the bar grows by one pass at a time);
    `on_step(done, total)`, when given, is called after every step (the app's progress bar)."""

    def __init__(self, desc: str = "denoising", passes: int | None = None,
                 on_step: Callable[[int, int], None] | None = None, bar: bool = True):
        self.desc, self.passes, self.on_step, self.show_bar = desc, passes, on_step, bar
        self.pass_index, self.done, self.total, self._bar = 0, 0, 0, None

    def plans(self, plans: list[Any]) -> None:
        """Print the plan(s): title, domain and step count (every caption at ``verbose``)."""
        level = verbosity()
        if not self.show_bar or level < NORMAL:
            return
        for plan in plans[:4]:
            print(f"procseq: plan: {plan.title!r}, {plan.num_steps} steps ({plan.domain})", file=sys.stderr, flush=True)
            if level >= VERBOSE:
                for i, caption in enumerate(plan.captions, 1):
                    print(f"  {i}. {caption}", file=sys.stderr, flush=True)

    def step(self, i: int, steps: int) -> None:
        """Step `i` (0-based) of a denoising loop of `steps` steps is done."""
        if i == 0:  # a new denoising loop: the total grows when more passes come than expected
            self.pass_index += 1
            expected = self.passes or 1
            if self.pass_index == 1:
                self.total = steps * expected
            elif self.pass_index > expected:
                self.total += steps
        self.done += 1
        if self.show_bar:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, desc=self.desc, unit="step", file=sys.stderr, dynamic_ncols=True)
            if self._bar.total != self.total:
                self._bar.total = self.total
            if self.passes != 1:
                label = f"{self.pass_index}/{self.passes}" if self.passes else str(self.pass_index)
                self._bar.set_postfix_str(f"pass {label}", refresh=False)
            self._bar.update(1)
        if self.on_step is not None:
            self.on_step(self.done, self.total)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_CURRENT: ContextVar[Progress | None] = ContextVar("procseq_progress", default=None)


@contextmanager
def show_progress(desc: str = "denoising", passes: int | None = None,
                  on_step: Callable[[int, int], None] | None = None, bar: bool = True) -> Iterator[Progress]:
    """Report the plans and denoising steps of the generations run inside the block (a bar on stderr when `bar`,
    unless the verbosity is quiet or this is not rank 0; `on_step` is called either way)."""
    progress = Progress(desc, passes, on_step, bar=bar and verbosity() >= NORMAL)
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        _CURRENT.reset(token)
        progress.close()


def denoise_step(i: int, steps: int) -> None:
    """Called by the denoising loop after step `i` of `steps`; reports to the open :func:`show_progress`."""
    progress = _CURRENT.get()
    if progress is not None:
        progress.step(i, steps)


def plans_made(plans: list[Any]) -> None:
    """Called once the plans of a generation are made; prints them in an open :func:`show_progress`."""
    progress = _CURRENT.get()
    if progress is not None:
        progress.plans(plans)


__all__ = ["Progress", "denoise_step", "plans_made", "show_progress"]
