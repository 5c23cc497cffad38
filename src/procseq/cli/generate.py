"""`procseq generate`, `procseq samples`, `procseq bench`: sequences from a prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from procseq.cli.adapt import adaptive_config, adaptive_options, check_features, insertion_pipeline, make_interpolator
from procseq.cli.common import (
    ADAPTERS_HELP,
    CFG_HELP,
    KNOWN_HELP,
    MIX_HELP,
    MODEL_HELP,
    atomic_output_dir,
    check_output_free,
    main,
    parse_known,
    parse_mix,
)
from procseq.cli.evaluate import per_domain


@main.command()
@click.argument("prompt")
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
              help="Output folder: grid.png, frame_XX.png, sequence.gif, sequence.json.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@click.option("--gif-ms", default=600, show_default=True, type=int, help="Milliseconds per frame in sequence.gif.")
@click.option("--true-cfg-scale", default=None, type=float, help=CFG_HELP)
@click.option("--negative-prompt", default="", show_default=True, help="Negative prompt for --true-cfg-scale > 1.")
@click.option("--adapters", default=None, help=ADAPTERS_HELP)
@click.option("--adapter-mix", default=None, help=MIX_HELP)
@click.option("--known", "known_items", multiple=True, metavar="INDEX=IMAGE", help=KNOWN_HELP)
@click.option("--known-mode", type=click.Choice(["concat", "inplace"]), default=None,
              help="How known frames condition: condition tokens (concat) or overwriting their cells (inplace); "
                   "default: the condition LoRA's mode.")
@click.option("--lora", default=None, type=click.Path(path_type=Path),
              help="Condition LoRA folder or .safetensors for --known (default: the model's own known_frames/).")
@click.option("--max-pixels", default=50_000_000, show_default=True, type=int,
              help="Refuse larger --known images (checked before decoding).")
@click.option("--adaptive", is_flag=True,
              help="Adaptive steps after generation: insert frames where neighbours differ too much, delete where "
                   "too little (knobs below); the decisions go into sequence.json.")
@adaptive_options
def generate(prompt: str, domain: str, frames: int, seed: int, steps: int | None, guidance: float | None,
             frame_size: int | None, model: str, dtype: str, bf16_autocast: bool, device: str | None,
             cpu_offload: bool, out: Path, overwrite: bool, gif_ms: int, true_cfg_scale: float | None,
             negative_prompt: str, adapters: str | None, adapter_mix: str | None, known_items: tuple[str, ...],
             known_mode: str | None, lora: Path | None, max_pixels: int, adaptive: bool, features: Path | None,
             interpolator: str, **knobs: Any) -> None:
    """Generate the procedural sequence of PROMPT (the finished artifact) as frames + captions.

    With --known, some steps are given as pictures (any cells) and the others are generated to fit.
    """
    import torch

    from procseq.models.loading import load_pipeline

    if not prompt.strip():
        raise ValueError("The prompt is empty; describe the finished artifact, e.g. 'a red lego house'.")
    mix = parse_mix(adapter_mix)
    known = parse_known(known_items, frames, max_pixels)  # every bad picture fails here, before the model loads
    config = adaptive_config(**knobs) if adaptive else None
    check_features(features)
    check_output_free(out, overwrite)
    pipe = load_pipeline(model, dtype=dtype, device=device, cpu_offload=cpu_offload, adapters=adapters)
    if lora is not None:
        pipe.load_condition_lora(lora)
    with atomic_output_dir(out, overwrite) as tmp:
        generator = torch.Generator("cpu").manual_seed(seed)
        result = pipe(prompt, domain=domain, frames=frames, frame_size=frame_size, num_inference_steps=steps,
                      guidance_scale=guidance, generator=generator, adapter_weights=mix,
                      negative_prompt=negative_prompt, true_cfg_scale=true_cfg_scale, known=known,
                      known_mode=known_mode, autocast_dtype=torch.bfloat16 if bf16_autocast else None)
        if config is not None:
            from procseq.models.features import load_feature_extractor
            from procseq.pipelines.adaptive import adapt_output

            inserter = insertion_pipeline(pipe, model, lora, dtype=dtype, device=device) \
                if interpolator == "model" else None
            interp = make_interpolator(interpolator, inserter, prompt, domain, num_inference_steps=steps,
                                       true_cfg_scale=1.0)
            result = adapt_output(result, load_feature_extractor(pipe, features), [interp], config, seed)
        record = result.metadata[0].pop("adaptive", None)
        seq = result.sequences([prompt], domain)[0]
        inputs = {"known_inputs": {str(k): v for k, v in (i.split("=", 1) for i in known_items)}} if known else {}
        plan = {"plan": result.plans[0].to_dict()} if record is not None and result.plans else {}
        seq.save(tmp, extra={"seed": seed, "model": str(model), **inputs,
                             **({"adaptive": record, **plan} if record is not None else {})})
        result.grid[0].save(tmp / "grid.png")
        seq.frames[0].save(tmp / "sequence.gif", save_all=True, append_images=seq.frames[1:], duration=gif_ms, loop=0)
    click.echo(f"wrote {seq.num_frames} frames to {out} ({result.metadata[0]['timings_s']['total']:.2f} s)")



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
