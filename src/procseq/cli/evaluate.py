"""`procseq eval`: score a model, a baseline or sequence folders against the ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from procseq.cli.common import (
    ADAPTERS_HELP,
    CFG_HELP,
    MIX_HELP,
    MODEL_HELP,
    atomic_output_dir,
    check_output_free,
    check_sampling,
    main,
    model_inputs,
    parse_mix,
)
from procseq.cli.options import runtime_options
from procseq.sequence import MODES


@main.command("eval")
@click.option("--model", "-m", default=None, help=MODEL_HELP + " Mutually exclusive with --baseline/--score.")
@click.option("--baseline", type=click.Choice(["retrieval", "ground-truth"]), default=None,
              help="Score a baseline instead of a model: nearest training sequence by prompt, or the truth itself.")
@click.option("--score", "score_dir", default=None, type=click.Path(path_type=Path),
              help="Only score existing sequence folders (sequence.json with spec) under this folder.")
@click.option("--data", default="data_cache/corpus", show_default=True, type=click.Path(path_type=Path),
              help="Corpus folder (procseq data make).")
@click.option("--split", default="test-compositional", show_default=True,
              help="Which split to evaluate on: train, test-seen, test-compositional, test-length (held-out "
              "lengths: data make --lengths any) or test-paraphrase (wordings never in train: data make "
              "--wording paraphrase).")
@click.option("--domains", default=None,
              help="Comma-separated domains (default: the base model's domains, or every domain for baselines; "
                   "adapter domains such as clay only when named).")
@click.option("--n", default=None, type=int, help="Sequences per domain (default: all).")
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps (default: the model's); --steps is the older name. A process step is a frame.")
@click.option("--seed", default=0, show_default=True, type=int, help="Base seed added to each record's seed.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder: sequences/, report.md, report.json.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--adapters", default=None, help=ADAPTERS_HELP)
@click.option("--adapter-mix", default=None, help=MIX_HELP + " Applied to every evaluated domain.")
@click.option("--true-cfg-scale", default=None, type=float, help=CFG_HELP + " Negative prompt: ''.")
@click.option("--mode", type=click.Choice(list(MODES)), default="grid", show_default=True,
              help="The layout the model generates in: grid (MakeAnything), regional (CookAnything) or frame-by-frame "
                   "(Loom).")
@click.option("--allow-unseen", is_flag=True,
              help="Also evaluate domains the model and its adapters never saw (generalisation).")
@runtime_options(frame_size=False)
def evaluate_cmd(model: str | None, baseline: str | None, score_dir: Path | None, data: Path, split: str,
                 domains: str | None, n: int | None, steps: int | None, seed: int, out: Path, overwrite: bool,
                 adapters: str | None, adapter_mix: str | None, true_cfg_scale: float | None, mode: str,
                 allow_unseen: bool,
                 dtype: str, threads: int | None, device: str | None, cpu_offload: bool,
                 compile_model: bool) -> None:
    """Score a model, a baseline, or existing sequence folders against the corpus ground truth."""
    from procseq.data.dataset import load_split
    from procseq.eval import evaluate, run_ground_truth, run_retrieval, score_folders
    from procseq.eval.runner import per_domain

    if sum(x is not None for x in (model, baseline, score_dir)) != 1:
        raise ValueError("Pass exactly one of --model, --baseline or --score.")
    check_sampling(None, steps, None, seed=seed, true_cfg_scale=true_cfg_scale)
    if n is not None and n < 1:
        raise ValueError(f"--n must be >= 1, got {n}.")
    wanted = [d.strip() for d in domains.split(",") if d.strip()] if domains else None
    inputs = model_inputs(score_dir, data, model, adapters)
    check_output_free(out, overwrite, inputs)
    with atomic_output_dir(out, overwrite, inputs) as tmp:
        if score_dir is not None:
            report = score_folders(score_dir, name=score_dir.name, only=wanted, skip_bad=True)
            report.save(tmp)
            for bad in report.meta.get("skipped", []):
                click.echo(f"procseq: skipped {bad['folder']}: {bad['error']}", err=True)
        else:
            records_all = load_split(data, split)
            if model is not None:
                import torch

                from procseq.pipelines.loading import load_pipeline

                mix = parse_mix(adapter_mix)
                pipe = load_pipeline(model, adapters=adapters, dtype=dtype, threads=threads, device=device,
                                     cpu_offload=cpu_offload, compile=compile_model)
                pipe.set_progress_bar_config(disable=True)
                wanted = wanted or list(pipe.defaults.domains) or None
                records = per_domain(records_all, n, wanted)

                def generate_fn(prompt: str, domain: str, num_frames: int, s: int):
                    g = torch.Generator("cpu").manual_seed(s)
                    return pipe(prompt, domain=domain, frames=num_frames, num_inference_steps=steps, generator=g,
                                adapter_weights=mix, allow_unseen=allow_unseen, negative_prompt="",
                                true_cfg_scale=true_cfg_scale, mode=mode).frames[0]

                report = evaluate(generate_fn, records, tmp, name=str(model), base_seed=seed,
                                  meta={"model": str(model), "split": split, "steps": steps, "mode": mode,
                                        "adapters": adapters, "adapter_mix": mix, "true_cfg_scale": true_cfg_scale})
            elif baseline == "retrieval":
                records = per_domain(records_all, n, wanted)
                report = run_retrieval(load_split(data, "train"), records, tmp, cross_domain_fallback=True)
            else:
                report = run_ground_truth(per_domain(records_all, n, wanted), tmp)
    click.echo(report.to_markdown())
    click.echo(f"wrote {out}/report.md and report.json")
