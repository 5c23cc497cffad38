"""Shared pieces of the ``procseq`` command line: the root group, error handling, atomic output, option help.

User errors (bad input, missing files) print one line on stderr and exit with status 2; output
folders are written to a temporary sibling and renamed into place, so a failed command leaves
nothing half-written behind.
"""

from __future__ import annotations

from typing import Any

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click

USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, FileExistsError)


class ProcseqGroup(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            click.echo(f"procseq: error: {err}", err=True)
            ctx.exit(2)


def check_output_free(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty `out` unless `overwrite` (checked before any slow work starts)."""
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; choose another --out or pass --overwrite.")


@contextmanager
def atomic_output_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success it replaces `out`, on failure it is removed."""
    out = Path(out)
    check_output_free(out, overwrite)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as err:
        raise PermissionError(f"Cannot write to {parent}: {err.strerror or err}; choose a writable --out.") from err
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@click.group(cls=ProcseqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="procseq")
def main() -> None:
    """procseq: procedural sequences (the step-by-step making of things) on the FLUX.1 transformer."""


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
        if not sep or not name.strip():
            raise ValueError(f"Bad adapter mix {text!r}; write domain=weight pairs, e.g. 'lego=0.7,clay=0.3'.")
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
