"""`procseq plan`: an instruction becomes a step plan (``plan.json``, editable by hand) before anything is drawn."""

from __future__ import annotations

from pathlib import Path

import click

from procseq.cli.common import check_text, main

PLANNER_HELP = ("Who writes the steps: 'corpus' (offline, the corpus's caption language; default), a local causal LM "
                "folder (transformers), or an OpenAI-compatible endpoint URL (http://host:port/v1).")

TIMEOUT_HELP = "Seconds an endpoint planner may take for one whole request (connecting, answering, reading)."


@main.command()
@click.argument("instruction")
@click.option("--out", "-o", default="plan.json", show_default=True, type=click.Path(path_type=Path),
              help="Where to write the plan (JSON: title, domain, captions; edit it, then `procseq generate --plan`).")
@click.option("--domain", "-d", default=None, help="Process domain (default: read from the instruction).")
@click.option("--frames", "-n", default=None, type=int,
              help="Number of steps (default: read from the instruction, e.g. 'in 12 steps', else the domain's own).")
@click.option("--planner", default="corpus", show_default=True, help=PLANNER_HELP)
@click.option("--planner-model", default="default", show_default=True,
              help="Model name sent to an endpoint planner.")
@click.option("--planner-timeout", default=120.0, show_default=True, type=float, help=TIMEOUT_HELP)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def plan(instruction: str, out: Path, domain: str | None, frames: int | None, planner: str, planner_model: str,
         planner_timeout: float, overwrite: bool) -> None:
    """Write the step plan of INSTRUCTION (e.g. "show how to build a blue LEGO tower in 12 steps") to --out."""
    from procseq.outputs import write_json_atomic
    from procseq.planning.llm import load_planner
    from procseq.planning import plan_instruction

    from procseq.limits import MAX_PLAN_STEPS, check_float, check_int
    from procseq.outputs import check_file_target

    check_text(instruction, "instruction")
    check_int(frames, "--frames", 1, MAX_PLAN_STEPS)
    check_plan_domain(domain)
    check_float(planner_timeout, "--planner-timeout", 0.1, 3600.0)
    check_file_target(out, "--out")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it or choose another --out.")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; --out names the plan's JSON file, e.g. {out / 'plan.json'}.")
    result = plan_instruction(instruction, load_planner(planner, planner_model, planner_timeout), domain,
                              frames)
    from procseq.planning.vocabulary import unknown_words, unknown_words_note

    result.meta["unknown_words"] = unknown_words(result.title)  # against procseq-tiny's words (the corpus's)
    if note := unknown_words_note([result], "procseq-tiny", result.domain):
        click.echo(note, err=True)
    write_json_atomic(out, result.to_dict())
    click.echo(f"wrote a {result.num_steps}-step {result.domain} plan to {out}")


def check_plan_domain(domain: str | None) -> None:
    """Refuse a ``--domain`` the planner does not know (None: read from the instruction)."""
    from procseq.data.synthetic import REGISTRY

    if domain is not None and domain not in REGISTRY:
        raise ValueError(f"Unknown domain {domain[:40]!r}; choose one of {', '.join(sorted(REGISTRY))}, or leave "
                         "--domain out to read it from the instruction.")
