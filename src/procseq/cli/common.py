"""Shared pieces of the ``procseq`` command line: the root group, error handling, atomic output, option help.

User errors (bad input, missing files) print one line on stderr and exit with status 2; output
folders are written to a temporary sibling and renamed into place, so a failed command leaves
nothing half-written behind.
"""

from __future__ import annotations

import math
import signal
from typing import Any

import click

from procseq.limits import MAX_GRID_FRAMES, check_float, check_int, check_settings
from procseq.outputs import as_disk_error, atomic_output_dir, check_output_free, disk_full_message

USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, FileExistsError,
               IsADirectoryError, ConnectionError)
"""Errors the CLI prints as one line (exit 2): bad input, missing or misplaced files, an unreachable endpoint."""


def _terminate(signum: int, frame) -> None:
    click.echo(f"procseq: stopped by signal {signum}; unfinished output is removed", err=True)
    raise SystemExit(128 + signum)  # unwinds like an error: temporary output folders are removed


class ProcseqGroup(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2.

    A full disk or a read-only target is one line and exit status 1; SIGTERM unwinds like an error
    (so no temporary folder is left behind) and exits 143.
    """

    def invoke(self, ctx: click.Context):
        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread (e.g. a test runner thread)
            pass
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            click.echo(f"procseq: error: {one_line(err)}", err=True)
            ctx.exit(2)
        except Exception as err:  # a full disk, whoever reports it (OSError, safetensors' own error...)
            disk = as_disk_error(err)
            message = disk_full_message(disk) if disk is not None else None
            if message is None:
                raise
            click.echo(f"procseq: error: {message}", err=True)
            ctx.exit(1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def model_inputs(*paths: object) -> list[str]:
    """The options among `paths` that name existing local files or folders (inputs --out must not replace)."""
    import os

    return [str(p) for p in paths if p is not None and os.path.exists(str(p))]


def one_line(err: BaseException) -> str:
    """The message of `err` on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def check_text(value: str, what: str) -> str:
    """Refuse text that is not valid UTF-8 (undecodable bytes on the command line)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"The {what} is not valid UTF-8 text; pass it in UTF-8.") from None
    return value


def check_positive(value: int | None, option: str, maximum: int | None = None) -> None:
    """Refuse an integer option that is < 1 (or > `maximum`); None means 'the default' and passes."""
    check_int(value, option, 1, maximum)


def check_sampling(frames: int | None, steps: int | None, frame_size: int | None, gif_ms: int | None = None,
                   seed: int | None = None, max_frames: int = MAX_GRID_FRAMES, **floats: float | None) -> None:
    """Range checks shared by generate/recraft/eval (:func:`procseq.limits.check_settings`, the same checks as a
    batch line's): counts >= 1, a bounded frame and grid size, finite scales in 0..100.

    `max_frames` is the layout's bound (64 for the grid and regional modes, 256 frame by frame). `floats`
    maps option names (``true_cfg_scale=...``) to values that must be finite and in 0..100.
    """
    check_settings("--", frames=frames, steps=steps, frame_size=frame_size, gif_ms=gif_ms, seed=seed,
                   max_frames=max_frames, **floats)


def check_finite(value: float | None, option: str, minimum: float | None = None) -> None:
    """Refuse a float option that is NaN or infinite (or < `minimum`); None passes."""
    check_float(value, option, minimum)


@click.group(cls=ProcseqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bars or notices: only results and errors (also: PROCSEQ_VERBOSITY=quiet).")
@click.option("--verbose", "-v", is_flag=True,
              help="Every caption of the plan, and the libraries' own loading bars and warnings "
                   "(also: PROCSEQ_VERBOSITY=verbose).")
@click.version_option(package_name="procseq")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """procseq: procedural sequences (the step-by-step making of things) on the FLUX.1 transformer.

    Slow commands show the plan and a progress bar on stderr; under torchrun only rank 0 prints.
    """
    import os

    from procseq.distributed import check_launch
    from procseq.quiet import ENV, QUIET, VERBOSE, set_verbosity, verbosity

    if quiet and verbose:
        raise ValueError("Pass --quiet or --verbose, not both.")
    previous = os.environ.get(ENV)
    if quiet or verbose:
        set_verbosity(QUIET if quiet else VERBOSE)

        def restore() -> None:  # the level holds for this run (and its child processes), not after it
            if previous is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous

        ctx.call_on_close(restore)
    verbosity(strict=True)  # a bad PROCSEQ_VERBOSITY is one line, before anything runs
    check_launch()


MODEL_HELP = ("Flux checkpoint: 'procseq-tiny' (embedded, default), a local diffusers folder, "
              "or a hub id such as black-forest-labs/FLUX.1-dev (needs network).")
ADAPTERS_HELP = ("Multi-domain adapter file (from `procseq train adapter`) to load, or 'none'. Default: the model "
                 "folder's installed adapters/adapters.safetensors (procseq-tiny ships one for clay and sand_art).")
CFG_HELP = ("True classifier-free guidance: >1 runs a second, negative-prompt pass per step and extrapolates "
            "away from it (2x the compute); 1 = off. Default: the model's (2 for procseq-tiny).")
MIX_HELP = ("Mix of adapter domains instead of --domain's own adapter, e.g. 'lego=0.7,clay=0.3' "
            "(weights >= 0, summing to 1).")


def parse_mix(text: str | None) -> dict[str, float] | None:
    """``"lego=0.7,clay=0.3"`` -> ``{"lego": 0.7, "clay": 0.3}`` (None for None/empty)."""
    if not text:
        return None
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or not math.isfinite(mix.get(name.strip(), 0.0)) or mix[name.strip()] < 0:
            raise ValueError(f"Bad adapter mix {text!r}; write domain=weight pairs with finite weights >= 0, "
                             "e.g. 'lego=0.7,clay=0.3'.")
    return mix


KNOWN_HELP = ("A known frame INDEX=IMAGE (repeatable; any cells, 0 = first, -1 = last): the given picture is that step, "
              "the others are generated to fit. PNG/JPEG/WebP, padded to a square with white.")


def parse_known(items: tuple[str, ...], frames: int, max_pixels: int) -> dict[int, Any] | None:
    """``("0=first.png", "-1=done.png")`` -> ``{0: image, 8: image}``, every file opened and checked before any
    model loads (``ValueError``/``FileNotFoundError`` with the fix otherwise)."""
    if not items:
        return None
    from procseq.conditioning.frames import check_known_indices
    from procseq.images import open_image

    parsed: list[tuple[int, str]] = []
    for item in items:
        index, sep, path = item.partition("=")
        try:
            k = int(index)
        except ValueError:
            k = None
        if not sep or k is None or not path:
            raise ValueError(f"Bad --known {item!r}; use INDEX=IMAGE, e.g. --known 0=first.png --known -1=done.png.")
        parsed.append((k, path))
    check_known_indices([k for k, _ in parsed], frames)
    return {k % frames: open_image(path, max_pixels) for k, path in parsed}
