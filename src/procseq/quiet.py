"""How much procseq says: third-party chatter kept off a normal run, ``--quiet`` / ``--verbose``, rank 0 only.

The level comes from ``PROCSEQ_VERBOSITY`` (``quiet``, ``normal``, ``verbose``; or 0, 1, 2), which the command
line's ``--quiet`` / ``--verbose`` set for the whole run (and its child processes). ``quiet``: no progress bars
and no notices, only results and errors; ``normal``: one progress bar per slow stage and one-line notices;
``verbose``: the libraries' own loading bars and warnings too. Under ``torchrun`` / ``accelerate launch`` only the
process of rank 0 speaks (the others are quiet), so a notice appears once, not once per process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "PROCSEQ_VERBOSITY"
QUIET, NORMAL, VERBOSE = 0, 1, 2
LEVELS = {"quiet": QUIET, "0": QUIET, "normal": NORMAL, "1": NORMAL, "verbose": VERBOSE, "2": VERBOSE}


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its launch (``RANK`` as torchrun and accelerate set it; 0 when alone)."""
    try:
        return int(os.environ.get("RANK", "0") or 0) == 0
    except ValueError:
        return True


def verbosity(strict: bool = False) -> int:
    """The level of this process: :data:`QUIET` on every rank but 0, else ``PROCSEQ_VERBOSITY`` (default normal).

    A value that is not a level counts as normal, or raises ``ValueError`` with the fix when `strict` (the
    command line checks it once, at the start)."""
    text = os.environ.get(ENV, "").strip().lower() or "normal"
    if text not in LEVELS:
        if strict:
            raise ValueError(f"{ENV}={os.environ[ENV]!r} is not a level; set it to quiet, normal or verbose "
                             "(or 0, 1, 2).")
        text = "normal"
    return LEVELS[text] if is_rank_zero() else QUIET


def set_verbosity(level: int) -> None:
    """Set the level for this process and the processes it starts (``PROCSEQ_VERBOSITY``)."""
    names = {QUIET: "quiet", NORMAL: "normal", VERBOSE: "verbose"}
    if level not in names:
        raise ValueError(f"Unknown verbosity {level!r}; use 0 (quiet), 1 (normal) or 2 (verbose).")
    os.environ[ENV] = names[level]


def notice(message: str, level: int = NORMAL) -> None:
    """Print ``procseq: message`` on stderr when the verbosity is at least `level` (rank 0 only)."""
    if verbosity() >= level:
        print(f"procseq: {message}", file=sys.stderr, flush=True)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Import and load without per-component/per-weight progress bars and library warnings (e.g.
    transformers' torchvision notices for image processors procseq never uses); restored afterwards. At
    ``verbose`` the libraries keep their own bars and warnings."""
    if verbosity() >= VERBOSE:
        yield
        return
    import transformers
    from diffusers.utils import logging as diffusers_logging

    t_log = transformers.utils.logging
    t_level, d_level = t_log.get_verbosity(), diffusers_logging.get_verbosity()
    t_bars, d_bars = t_log.is_progress_bar_enabled(), diffusers_logging.is_progress_bar_enabled()
    t_log.set_verbosity_error()
    diffusers_logging.set_verbosity_error()
    t_log.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        t_log.set_verbosity(t_level)
        diffusers_logging.set_verbosity(d_level)
        if t_bars:
            t_log.enable_progress_bar()
        if d_bars:
            diffusers_logging.enable_progress_bar()


__all__ = ["ENV", "NORMAL", "QUIET", "VERBOSE", "is_rank_zero", "notice", "quiet_loading", "set_verbosity",
           "verbosity"]
