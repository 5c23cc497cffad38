"""Third-party chatter kept off a normal run: one progress bar per stage, no library notices."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Import and load without per-component/per-weight progress bars and library warnings (e.g.
    transformers' torchvision notices for image processors procseq never uses); restored afterwards."""
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


__all__ = ["quiet_loading"]
