"""`procseq plan`: an instruction becomes a step plan (``plan.json``, editable by hand) before anything is drawn."""

from __future__ import annotations

from pathlib import Path

import click

from procseq.cli.common import check_text, main

PLANNER_HELP = ("Who writes the steps: 'corpus' (offline, the corpus's caption language; default), a local causal LM "
                "folder (transformers), or an OpenAI-compatible endpoint URL (http://host:port/v1).")


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
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def plan(instruction: str, out: Path, domain: str | None, frames: int | None, planner: str, planner_model: str,
         overwrite: bool) -> None:
    """Write the step plan of INSTRUCTION (e.g. "show how to build a blue LEGO tower in 12 steps") to --out."""
    from procseq.outputs import write_json_atomic
    from procseq.planning.llm import load_planner
    from procseq.planning import plan_instruction

    check_text(instruction, "instruction")
    if frames is not None and not 1 <= frames <= 256:
        raise ValueError(f"--frames must be between 1 and 256, got {frames}.")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it or choose another --out.")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; --out names the plan's JSON file, e.g. {out / 'plan.json'}.")
    result = plan_instruction(instruction, load_planner(planner, planner_model), domain, frames)
    from procseq.planning.vocabulary import unknown_words, unknown_words_note

    result.meta["unknown_words"] = unknown_words(result.title)  # against procseq-tiny's words (the corpus's)
    if note := unknown_words_note([result], "procseq-tiny", result.domain):
        click.echo(note, err=True)
    write_json_atomic(out, result.to_dict())
    click.echo(f"wrote a {result.num_steps}-step {result.domain} plan to {out}")
