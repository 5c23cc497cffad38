"""Options shared by every command that generates: where and how the model runs (dtype, threads, device, offload)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from procseq.machine import DTYPE_NAMES

DTYPE_HELP = ("Weights dtype. auto: the faster for this model on this machine (bf16 for FLUX.1-sized models on "
              "GPUs and on CPUs with avx512_bf16/AMX, else fp32; `procseq bench` says why).")
THREADS_HELP = "torch intra-op threads (default: OMP_NUM_THREADS if set, else every available core)."
COMPILE_HELP = ("torch.compile the transformer (its tanh GELUs computed through sigmoid, within 5e-7): ~1.35x faster "
                "per generation on a 2-core CPU, after ~30 s of compilation per frame count (less once inductor's "
                "cache has it); pays off after a few hundred generations of one shape, not for one.")
FRAME_SIZE_HELP = ("Frame side in pixels (default: the model's procseq.json size; without one, MakeAnything's: "
                   "512 for up to 4 frames, 352 for 9).")


def runtime_options(frame_size: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--dtype``, ``--threads``, ``--device``, ``--cpu-offload``, ``--compile`` (and ``--frame-size``)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--compile", "compile_model", is_flag=True, help=COMPILE_HELP)(f)
        f = click.option("--cpu-offload", is_flag=True,
                         help="enable_model_cpu_offload (large models on a small GPU).")(f)
        f = click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")(f)
        f = click.option("--threads", default=None, type=click.IntRange(min=1), help=THREADS_HELP)(f)
        f = click.option("--dtype", default="auto", show_default=True, type=click.Choice(DTYPE_NAMES),
                         help=DTYPE_HELP)(f)
        if frame_size:
            f = click.option("--frame-size", default=None, type=int, help=FRAME_SIZE_HELP)(f)
        return f

    return decorate


def report_choices(pipe: Any, frames: int | None = None, frame_size: int | None = None) -> None:
    """One line on stderr: the dtype and threads chosen and why, and the frame size when no procseq.json set it."""
    choices = getattr(pipe, "machine_choices", {})
    parts = [f"{name} {c.value} ({c.reason})" for name, c in choices.items()]
    if frames is not None and frame_size is None and not pipe.defaults.from_config:
        parts.append(pipe.defaults.describe_frame_size(frames))
    if parts:
        from procseq.quiet import notice

        notice("; ".join(parts))


def loading_notice(model: object) -> None:
    """One line before a model loads (seconds to minutes): which one."""
    from procseq.quiet import notice

    notice(f"loading {model} ...")


FRAME_SCALE_HELP = ("Write frame_XX.png and sequence.gif enlarged this many times (nearest neighbour, 1..16; "
                    "sequence.json records it, so the folder still loads at the model's size). grid.png is never "
                    "enlarged; sequence.png, the readable sheet, is enlarged to at least 128 px per frame anyway.")


def frame_scale_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--frame-scale`` (the enlargement of the written frames; :func:`procseq.sheet.write_sequence_folder`)."""
    return click.option("--frame-scale", default=1, show_default=True, type=click.IntRange(1, 16),
                        help=FRAME_SCALE_HELP)(f)


class SectionedCommand(click.Command):
    """A click command whose ``--help`` lists its options in titled sections (plain click, no extra package).

    ``sections``: ``[(title, [parameter names])]`` in order; options not named go under "Other options"."""

    def __init__(self, *args: Any, sections: list[tuple[str, list[str]]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sections = sections or []

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx) if isinstance(p, click.Option)}
        placed: set[str | None] = set()
        for title, names in self.sections:
            rows = [records[n] for n in names if records.get(n) is not None]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [r for name, r in records.items() if name not in placed and r is not None]
        if rest:
            with formatter.section("Other options"):
                formatter.write_dl(rest)
