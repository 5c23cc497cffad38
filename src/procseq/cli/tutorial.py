"""`procseq tutorial`: an instruction becomes a planned, illustrated tutorial (Markdown + self-contained HTML)."""

from __future__ import annotations

from pathlib import Path

import click

from procseq.cli.common import MODEL_HELP, atomic_output_dir, check_output_free, check_sampling, check_text, main, \
    model_inputs
from procseq.cli.options import frame_scale_option, loading_notice, report_choices, runtime_options
from procseq.limits import check_float, max_frames
from procseq.cli.plan import PLANNER_HELP, TIMEOUT_HELP, check_plan_domain


@main.command()
@click.argument("instruction", required=False)
@click.option("--out", "-o", default="outputs/tutorial", show_default=True, type=click.Path(path_type=Path),
              help="Output folder: tutorial.md, tutorial.html (images embedded), frame_XX.png, grid.png, sequence.gif, "
                   "sequence.png, sequence.json.")
@click.option("--plan", "plan_file", default=None, type=click.Path(path_type=Path),
              help="Use this plan.json (from `procseq plan`) instead of planning INSTRUCTION.")
@click.option("--domain", "-d", default=None, help="Process domain (default: read from the instruction).")
@click.option("--frames", "-n", default=None, type=int,
              help="Number of steps (default: read from the instruction, else the domain's own).")
@click.option("--mode", default=None, type=click.Choice(["grid", "regional", "frame-by-frame"]),
              help="Layout: one grid (up to the model's maximum), regional (up to 64) or frame-by-frame (any number of "
                   "steps). Default: the layout BENCHMARKS measures best for the length (the grid when it fits).")
@click.option("--image", default=None, type=click.Path(path_type=Path),
              help="A picture of the finished thing: the tutorial ends in it (ReCraft in grid mode, the known last "
                   "frame in the other modes); captions from the plan.")
@click.option("--planner", default="corpus", show_default=True, help=PLANNER_HELP)
@click.option("--planner-model", default="default", show_default=True, help="Model name sent to an endpoint planner.")
@click.option("--planner-timeout", default=120.0, show_default=True, type=float, help=TIMEOUT_HELP)
@click.option("--seed", "-s", default=0, show_default=True, type=int, help="Random seed (same seed, same output).")
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps (default: the model's); --steps is the older name. A process step is a frame.")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@runtime_options()
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@frame_scale_option
def tutorial(instruction: str | None, out: Path, plan_file: Path | None, domain: str | None, frames: int | None,
             mode: str | None, image: Path | None, planner: str, planner_model: str, planner_timeout: float,
             seed: int, steps: int | None, model: str,
             frame_size: int | None, dtype: str, threads: int | None, device: str | None, cpu_offload: bool,
             compile_model: bool, overwrite: bool, frame_scale: int) -> None:
    """Plan INSTRUCTION (e.g. "show how to build a blue LEGO tower in 12 steps"), draw every step, and write the
    tutorial to --out."""
    from procseq.planning import plan_instruction

    if (instruction is None) == (plan_file is None):
        raise ValueError("Give an INSTRUCTION or --plan plan.json (one of them).")
    check_sampling(frames, steps, frame_size, None, seed, max_frames=max_frames(mode))
    check_plan_domain(domain)
    check_float(planner_timeout, "--planner-timeout", 0.1, 3600.0)
    if image is not None and not image.is_file():
        raise FileNotFoundError(f"No picture at {image}; pass the finished thing as a PNG/JPEG/WebP file.")
    check_output_free(out, overwrite, model_inputs(model, plan_file, image))
    if plan_file is not None:
        from procseq.cli.generate import load_plan

        plan = load_plan(plan_file)
    else:
        from procseq.planning.llm import load_planner

        plan = plan_instruction(check_text(instruction or "", "instruction"),
                                load_planner(planner, planner_model, planner_timeout),
                                domain, frames)
    import torch

    from procseq.pipelines.loading import load_pipeline
    from procseq.tutorial import generate_tutorial, write_tutorial

    if image is not None:
        from procseq.images import open_image

        open_image(image)  # a bad picture fails here, before the model loads
    from procseq.progress import show_progress

    loading_notice(model)
    pipe = load_pipeline(model, dtype=dtype, device=device, cpu_offload=cpu_offload, threads=threads,
                         compile=compile_model)
    pipe.set_progress_bar_config(disable=True)  # procseq.progress shows the plan and every pass's steps
    report_choices(pipe, plan.num_steps, frame_size)
    if mode is None:
        from procseq.tutorial import best_layout

        mode = best_layout(plan.num_steps, pipe.defaults.max_frames)
    passes = plan.num_steps - (image is not None) if mode == "frame-by-frame" else None
    inputs = model_inputs(model, plan_file, image)
    with atomic_output_dir(out, overwrite, inputs) as tmp, show_progress(passes=passes):
        result = generate_tutorial(pipe, plan, mode, str(image) if image is not None else None, frame_size=frame_size,
                                   num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed))
        write_tutorial(result, tmp, plan, {"seed": seed, "model": str(model),
                                           **({"image": str(image)} if image is not None else {})},
                       frame_scale=frame_scale)
    from procseq.planning.vocabulary import unknown_words_note

    if note := unknown_words_note(result.plans, model, plan.domain):
        click.echo(note, err=True)
    click.echo(f"wrote a {plan.num_steps}-step tutorial to {out}/tutorial.html")
