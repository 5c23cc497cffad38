"""`procseq generate`, `procseq samples`, `procseq bench`: sequences from a prompt."""

from __future__ import annotations

import json
from pathlib import Path

import click

from procseq.cli.common import (
    ADAPTERS_HELP,
    CFG_HELP,
    MIX_HELP,
    MODEL_HELP,
    atomic_output_dir,
    check_output_free,
    main,
    parse_mix,
)
from procseq.cli.evaluate import per_domain


@main.command()
@click.argument("prompt", required=False)
@click.option("--prompts", "prompts_file", default=None, type=click.Path(path_type=Path),
              help="Batch mode: a JSONL file, one object per line (prompt, and optionally domain, frames, seed, steps, "
                   "guidance, true_cfg_scale, negative_prompt, adapter_mix, mode, id); --out is then the folder of "
                   "one sub-folder per item. Resumable; splits across processes under torchrun/accelerate launch.")
@click.option("--domain", "-d", default="painting", show_default=True,
              help="Process domain (painting, lego, cooking... or an adapter domain such as clay). Must be one the "
                   "model or its adapters know (`procseq adapter list`).")
@click.option("--frames", "-n", default=9, show_default=True, type=int,
              help="Number of steps/frames (2..the model's maximum; 9 -> 3x3 grid, 4 -> 2x2).")
@click.option("--seed", "-s", default=0, show_default=True, type=int, help="Random seed (same seed, same output).")
@click.option("--steps", default=None, type=int, help="Denoising steps (default: the model's).")
@click.option("--guidance", default=None, type=float, help="Guidance scale (default: the model's).")
@click.option("--frame-size", default=None, type=int, help="Frame side in pixels (default: the model's native size).")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "bfloat16", "float16"]), help="Weights dtype.")
@click.option("--bf16-autocast/--no-bf16-autocast", default=False, show_default=True,
              help="Run the transformer under bf16 autocast (fast on CPUs with AMX).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--cpu-offload", is_flag=True, help="enable_model_cpu_offload (large models on a small GPU).")
@click.option("--out", "-o", default="outputs/sequence", show_default=True, type=click.Path(path_type=Path),
              help="Output folder: grid.png, frame_XX.png, sequence.gif, sequence.json (with --prompts: one "
                   "sub-folder per item, plus batch.json).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists (with --prompts: redo finished items).")
@click.option("--gif-ms", default=600, show_default=True, type=int, help="Milliseconds per frame in sequence.gif.")
@click.option("--true-cfg-scale", default=None, type=float, help=CFG_HELP)
@click.option("--negative-prompt", default="", show_default=True, help="Negative prompt for --true-cfg-scale > 1.")
@click.option("--adapters", default=None, help=ADAPTERS_HELP)
@click.option("--adapter-mix", default=None, help=MIX_HELP)
def generate(prompt: str | None, prompts_file: Path | None, domain: str, frames: int, seed: int, steps: int | None, guidance: float | None,
             frame_size: int | None, model: str, dtype: str, bf16_autocast: bool, device: str | None,
             cpu_offload: bool, out: Path, overwrite: bool, gif_ms: int, true_cfg_scale: float | None,
             negative_prompt: str, adapters: str | None, adapter_mix: str | None) -> None:
    """Generate the procedural sequence of PROMPT (the finished artifact) as frames + captions, or one per line
    of --prompts FILE.jsonl."""
    import torch

    from procseq.batch import save_sequence_folder
    from procseq.models.loading import load_pipeline

    if prompts_file is not None:
        if prompt is not None:
            raise ValueError("Give either a PROMPT or --prompts FILE.jsonl, not both.")
        defaults = {"domain": domain, "frames": frames, "seed": seed, "steps": steps, "guidance": guidance,
                    "true_cfg_scale": true_cfg_scale, "negative_prompt": negative_prompt,
                    "adapter_mix": parse_mix(adapter_mix)}
        options = {"frame_size": frame_size, "autocast_dtype": torch.bfloat16 if bf16_autocast else None}
        return generate_batch(prompts_file, out, defaults, options, model, dtype, device, cpu_offload, adapters,
                              gif_ms, overwrite)
    if prompt is None or not prompt.strip():
        raise ValueError("The prompt is empty; describe the finished artifact, e.g. 'a red lego house'.")
    mix = parse_mix(adapter_mix)
    check_output_free(out, overwrite)
    pipe = load_pipeline(model, dtype=dtype, device=device, cpu_offload=cpu_offload, adapters=adapters)
    with atomic_output_dir(out, overwrite) as tmp:
        generator = torch.Generator("cpu").manual_seed(seed)
        result = pipe(prompt, domain=domain, frames=frames, frame_size=frame_size, num_inference_steps=steps,
                      guidance_scale=guidance, generator=generator, adapter_weights=mix,
                      negative_prompt=negative_prompt, true_cfg_scale=true_cfg_scale,
                      autocast_dtype=torch.bfloat16 if bf16_autocast else None)
        save_sequence_folder(result, prompt, domain, tmp, {"seed": seed, "model": str(model)}, gif_ms)
    click.echo(f"wrote {frames} frames to {out} ({result.metadata[0]['timings_s']['total']:.2f} s)")


def generate_batch(prompts_file: Path, out: Path, defaults: dict, options: dict, model: str, dtype: str,
                   device: str | None, cpu_offload: bool, adapters: str | None, gif_ms: int, redo: bool) -> None:
    """``procseq generate --prompts FILE``: bad lines to stderr, the items, the summary table (main process)."""
    from procseq.batch import read_prompt_file, run_batch
    from procseq.distributed import process_state
    from procseq.models.loading import load_pipeline

    items, bad = read_prompt_file(prompts_file, defaults)
    state = process_state()
    main_process = state.is_main_process
    if device is None and state.num_processes > 1:
        device = str(state.device)  # one GPU per process (cuda:LOCAL_RANK); cpu on CPUs
    if main_process:
        for line, reason in bad:
            click.echo(f"procseq: {prompts_file}:{line}: skipped: {reason}", err=True)
    if not items:
        raise ValueError(f"{prompts_file} has no valid line; write one JSON object per line with a \"prompt\".")
    report = run_batch(lambda: load_pipeline(model, dtype=dtype, device=device, cpu_offload=cpu_offload,
                                             adapters=adapters),
                       items, bad, out, options, str(model), gif_ms, redo=redo)
    if main_process:
        click.echo(report.to_markdown())
        click.echo(f"wrote {out}/ ({report.counts['done']} generated, {report.counts['skipped']} already there)")
    if report.counts["failed"] or bad:
        raise SystemExit(1)



@main.command("samples")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--data", default="data_cache/corpus", show_default=True, type=click.Path(path_type=Path),
              help="Corpus folder whose prompts are used.")
@click.option("--split", default="test-compositional", show_default=True,
              type=click.Choice(["train", "test-seen", "test-compositional"]), help="Split the prompts come from.")
@click.option("--domains", default=None, help="Comma-separated domains (default: the model's domains).")
@click.option("--index", default=0, show_default=True, type=int, help="Which record of each domain.")
@click.option("--seed", default=0, show_default=True, type=int, help="Generation seed.")
@click.option("--with-truth/--no-truth", default=True, show_default=True,
              help="Put each domain's ground-truth sequence under the generated one.")
@click.option("--out", "-o", default="docs/samples.png", show_default=True, type=click.Path(path_type=Path),
              help="PNG to write.")
def samples(model: str, data: Path, split: str, domains: str | None, index: int, seed: int, with_truth: bool,
            out: Path) -> None:
    """One generated sequence per domain (prompts from the corpus) in one labelled PNG."""
    import torch

    from procseq.data.dataset import draw_montage, load_split
    from procseq.eval import render_spec
    from procseq.models.loading import load_pipeline

    pipe = load_pipeline(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    wanted = domains.split(",") if domains else list(pipe.defaults.domains)
    records = per_domain(load_split(data, split), index + 1, wanted or None)
    rows = []
    for name in wanted or sorted({r["domain"] for r in records}):
        mine = [r for r in records if r["domain"] == name]
        if len(mine) <= index:
            raise ValueError(f"{split} has no record {index} of domain {name!r}.")
        rec = mine[index]
        g = torch.Generator("cpu").manual_seed(seed)
        rows.append((f"{name}", pipe(rec["prompt"], domain=name, frames=rec["num_frames"], generator=g).frames[0]))
        if with_truth:
            rows.append(("  truth", render_spec(rec["spec"])))
        click.echo(f"{name}: {rec['prompt']}")
    click.echo(f"wrote {draw_montage(rows, out)}")


@main.command("bench")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--prompt", default="a red house with a yellow sun", show_default=True, help="Prompt to time.")
@click.option("--domain", default="painting", show_default=True, help="Domain to time.")
@click.option("--frames", default=9, show_default=True, type=int, help="Frames per sequence.")
@click.option("--steps", default=None, type=int, help="Denoising steps (default: the model's).")
@click.option("--runs", default=5, show_default=True, type=int, help="Timed generations after one warm-up.")
@click.option("--bf16-autocast/--no-bf16-autocast", default=False, show_default=True,
              help="Time the transformer under bf16 autocast.")
@click.option("--true-cfg-scale", default=None, type=float, help=CFG_HELP)
@click.option("--json-out", default=None, type=click.Path(path_type=Path), help="Also write the result as JSON.")
def bench_cmd(model: str, prompt: str, domain: str, frames: int, steps: int | None, runs: int,
              bf16_autocast: bool, true_cfg_scale: float | None, json_out: Path | None) -> None:
    """Latency (median/min/max), peak RSS and achieved TFLOP/s of one sequence generation."""
    import torch

    from procseq.eval.bench import bench
    from procseq.models.loading import load_pipeline

    if runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}.")
    pipe = load_pipeline(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    result = bench(pipe, prompt, domain, frames, steps, runs, torch.bfloat16 if bf16_autocast else None,
                   true_cfg_scale)
    click.echo(result.to_markdown())
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
