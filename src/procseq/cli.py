"""The ``procseq`` command line: generate | train | data | eval | init-tiny.

User errors (bad input, missing files) print one line on stderr and exit with status 2; output
folders are written to a temporary sibling and renamed into place, so a failed command leaves
nothing half-written behind.
"""

from __future__ import annotations

import json
import shutil
import sys
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
def generate(prompt: str, domain: str, frames: int, seed: int, steps: int | None, guidance: float | None,
             frame_size: int | None, model: str, dtype: str, bf16_autocast: bool, device: str | None,
             cpu_offload: bool, out: Path, overwrite: bool, gif_ms: int, true_cfg_scale: float | None,
             negative_prompt: str, adapters: str | None, adapter_mix: str | None) -> None:
    """Generate the procedural sequence of PROMPT (the finished artifact) as frames + captions."""
    import torch

    from procseq.models.loading import load_pipeline

    if not prompt.strip():
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
        seq = result.sequences([prompt], domain)[0]
        seq.save(tmp, extra={"seed": seed, "model": str(model)})
        result.grid[0].save(tmp / "grid.png")
        seq.frames[0].save(tmp / "sequence.gif", save_all=True, append_images=seq.frames[1:], duration=gif_ms, loop=0)
    click.echo(f"wrote {frames} frames to {out} ({result.metadata[0]['timings_s']['total']:.2f} s)")


class TrainGroup(click.Group):
    """``procseq train CONFIG`` (the base model) or ``procseq train adapter|recraft CONFIG``."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["base", *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[base|adapter|recraft] CONFIG [OPTIONS]")


@main.group(cls=TrainGroup)
def train() -> None:
    """Train from a YAML CONFIG (a file or a preset name); every run resumes from its newest checkpoint.

    \b
    procseq train CONFIG            the base model (transformer, optionally text encoders / VAE)
    procseq train adapter CONFIG    multi-domain adapters (asymmetric / masked LoRA) on a frozen base
    procseq train recraft CONFIG    the ReCraft condition LoRA (finished image -> process)

    Multi-GPU: `accelerate launch -m procseq.cli train ...`.
    """


def _load_run_config(config: str, max_steps: int | None, output_dir: str | None, overrides: tuple[str, ...] = ()):
    from procseq.training.config import RunConfig

    cfg = RunConfig.from_yaml(config, overrides=overrides)
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    if output_dir is not None:
        cfg.train.output_dir = output_dir
    return cfg


MAX_STEPS_HELP = "Override train.max_steps."
OUTPUT_DIR_HELP = "Override train.output_dir."
SET_HELP = "Override any config value: --set section.key=VALUE (YAML value; repeatable), e.g. --set adapter.kind=masked."


@train.command("base")
@click.argument("config")
@click.option("--max-steps", default=None, type=int, help=MAX_STEPS_HELP)
@click.option("--output-dir", default=None, help=OUTPUT_DIR_HELP)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def train_base(config: str, max_steps: int | None, output_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Train the Flux transformer with flow matching from CONFIG (e.g. the `tiny` preset)."""
    from procseq.training.run import run_training

    result = run_training(_load_run_config(config, max_steps, output_dir, overrides))
    click.echo(f"trained to step {result.step} (loss {result.loss:.4f}, {result.seconds:.0f} s); model: {result.model_dir}")


@train.command("adapter")
@click.argument("config")
@click.option("--max-steps", default=None, type=int, help=MAX_STEPS_HELP)
@click.option("--output-dir", default=None, help=OUTPUT_DIR_HELP)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def train_adapter(config: str, max_steps: int | None, output_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Train a multi-domain adapter (asymmetric / masked / one standard LoRA) on a frozen base, from CONFIG
    (e.g. the `adapters` preset). Writes OUTPUT_DIR/model/adapters.safetensors; use it with
    `procseq generate --adapters FILE --domain D`.
    """
    from procseq.training.adapters import run_adapter_training

    result = run_adapter_training(_load_run_config(config, max_steps, output_dir, overrides))
    click.echo(f"trained to step {result.step} (loss {result.loss:.4f}, {result.seconds:.0f} s); "
               f"adapters: {result.model_dir / 'adapters.safetensors'}")


@main.group()
def data() -> None:
    """The synthetic corpus: make it, or look at it."""


@data.command("make")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Corpus folder to create.")
@click.option("--per-domain", default=1000, show_default=True, type=int,
              help="Training sequences per base domain (adapter domains keep their planned sizes).")
@click.option("--test-per-domain", default=None, type=int, help="Sequences per domain in each test split "
              "(default: per-domain / 10).")
@click.option("--frame-size", default=32, show_default=True, type=int, help="Frame side in pixels (multiple of 8, >= 32).")
@click.option("--seed", default=0, show_default=True, type=int, help="Corpus seed.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def data_make(out: Path, per_domain: int, test_per_domain: int | None, frame_size: int, seed: int,
              overwrite: bool) -> None:
    """Render the synthetic corpus: train, test-seen, test-compositional (images + metadata.jsonl)."""
    from procseq.data.dataset import make_corpus

    manifest = make_corpus(out, per_domain=per_domain, frame_size=frame_size, seed=seed,
                           test_per_domain=test_per_domain, overwrite=overwrite)
    click.echo(f"wrote {out}: " + json.dumps(manifest.get("counts", {})))


@data.command("montage")
@click.option("--out", "-o", default="docs/corpus.png", show_default=True, type=click.Path(path_type=Path),
              help="PNG to write.")
@click.option("--frame-size", default=32, show_default=True, type=int, help="Frame side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Which sequence of each domain.")
def data_montage(out: Path, frame_size: int, seed: int) -> None:
    """One ground-truth sequence per domain in one labelled PNG."""
    from procseq.data.dataset import montage

    click.echo(f"wrote {montage(out, frame_size=frame_size, seed=seed)}")


def per_domain(records: list[dict], n: int | None, domains: list[str] | None) -> list[dict]:
    """The first `n` records of each domain (all with n=None), optionally only `domains`."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        if domains and r["domain"] not in domains:
            continue
        if n is None or seen.get(r["domain"], 0) < n:
            seen[r["domain"]] = seen.get(r["domain"], 0) + 1
            out.append(r)
    return out


@main.command("eval")
@click.option("--model", "-m", default=None, help=MODEL_HELP + " Mutually exclusive with --baseline/--score.")
@click.option("--baseline", type=click.Choice(["retrieval", "ground-truth"]), default=None,
              help="Score a baseline instead of a model: nearest training sequence by prompt, or the truth itself.")
@click.option("--score", "score_dir", default=None, type=click.Path(path_type=Path),
              help="Only score existing sequence folders (sequence.json with spec) under this folder.")
@click.option("--data", default="data_cache/corpus", show_default=True, type=click.Path(path_type=Path),
              help="Corpus folder (procseq data make).")
@click.option("--split", default="test-compositional", show_default=True,
              type=click.Choice(["train", "test-seen", "test-compositional"]), help="Which split to evaluate on.")
@click.option("--domains", default=None,
              help="Comma-separated domains (default: the base model's domains, or every domain for baselines; "
                   "adapter domains such as clay only when named).")
@click.option("--n", default=None, type=int, help="Sequences per domain (default: all).")
@click.option("--steps", default=None, type=int, help="Denoising steps (default: the model's).")
@click.option("--seed", default=0, show_default=True, type=int, help="Base seed added to each record's seed.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder: sequences/, report.md, report.json.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--adapters", default=None, help=ADAPTERS_HELP)
@click.option("--adapter-mix", default=None, help=MIX_HELP + " Applied to every evaluated domain.")
@click.option("--true-cfg-scale", default=None, type=float, help=CFG_HELP + " Negative prompt: ''.")
@click.option("--allow-unseen", is_flag=True,
              help="Also evaluate domains the model and its adapters never saw (generalisation).")
def evaluate_cmd(model: str | None, baseline: str | None, score_dir: Path | None, data: Path, split: str,
                 domains: str | None, n: int | None, steps: int | None, seed: int, out: Path, overwrite: bool,
                 adapters: str | None, adapter_mix: str | None, true_cfg_scale: float | None, allow_unseen: bool) -> None:
    """Score a model, a baseline, or existing sequence folders against the corpus ground truth."""
    from procseq.data.dataset import load_split
    from procseq.eval import evaluate, run_ground_truth, run_retrieval, score_folders

    if sum(x is not None for x in (model, baseline, score_dir)) != 1:
        raise ValueError("Pass exactly one of --model, --baseline or --score.")
    wanted = domains.split(",") if domains else None
    with atomic_output_dir(out, overwrite) as tmp:
        if score_dir is not None:
            report = score_folders(score_dir, name=score_dir.name, domains=wanted)
            report.save(tmp)
        else:
            records_all = load_split(data, split)
            if model is not None:
                import torch

                from procseq.models.loading import load_pipeline

                mix = parse_mix(adapter_mix)
                pipe = load_pipeline(model, adapters=adapters)
                pipe.set_progress_bar_config(disable=True)
                wanted = wanted or list(pipe.defaults.domains) or None
                records = per_domain(records_all, n, wanted)

                def generate_fn(prompt: str, domain: str, num_frames: int, s: int):
                    g = torch.Generator("cpu").manual_seed(s)
                    return pipe(prompt, domain=domain, frames=num_frames, num_inference_steps=steps, generator=g,
                                adapter_weights=mix, allow_unseen=allow_unseen, negative_prompt="",
                                true_cfg_scale=true_cfg_scale).frames[0]

                report = evaluate(generate_fn, records, tmp, name=str(model), base_seed=seed,
                                  meta={"model": str(model), "split": split, "steps": steps,
                                        "adapters": adapters, "adapter_mix": mix, "true_cfg_scale": true_cfg_scale})
            elif baseline == "retrieval":
                records = per_domain(records_all, n, wanted)
                report = run_retrieval(load_split(data, "train"), records, tmp, cross_domain_fallback=True)
            else:
                report = run_ground_truth(per_domain(records_all, n, wanted), tmp)
    click.echo(report.to_markdown())
    click.echo(f"wrote {out}/report.md and report.json")


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


@train.command("recraft")
@click.argument("config")
@click.option("--max-steps", default=None, type=int, help=MAX_STEPS_HELP)
@click.option("--output-dir", default=None, help=OUTPUT_DIR_HELP)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def train_recraft(config: str, max_steps: int | None, output_dir: str | None, overrides: tuple[str, ...]) -> None:
    """Train the ReCraft LoRA (finished image -> process) on a frozen base from CONFIG (e.g. the `recraft`
    preset; --set recraft.mode=inplace for the in-place baseline). Writes OUTPUT_DIR/model/
    (pytorch_lora_weights.safetensors, recraft.json); use it with `procseq recraft IMAGE --lora DIR`.
    """
    from procseq.training.recraft import run_recraft_training

    result = run_recraft_training(_load_run_config(config, max_steps, output_dir, overrides))
    click.echo(f"trained to step {result.step} (loss {result.loss:.4f}, {result.seconds:.0f} s); "
               f"LoRA: {result.model_dir}")


@main.command("recraft")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--domain", "-d", default=None,
              help="Process domain (default: the model's first domain, 'painting' for procseq-tiny).")
@click.option("--frames", "-n", default=9, show_default=True, type=int,
              help="Frames of the grid, the input included as the last one (9 -> 3x3, 4 -> 2x2).")
@click.option("--extend", default=0, show_default=True, type=int,
              help="Predict K more frames before the first one, recursively (output: frames + K).")
@click.option("--prompt", default=None, help="Text prompt instead of the domain phrase ('a painting', 'a LEGO'...), which ReCraft was trained with.")
@click.option("--seed", "-s", default=0, show_default=True, type=int, help="Random seed (same seed, same output).")
@click.option("--steps", default=None, type=int, help="Denoising steps (default: the model's).")
@click.option("--mode", type=click.Choice(["concat", "inplace"]), default=None,
              help="Condition tokens (concat) or in-place overwrite of the final cell (default: the LoRA's mode).")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--lora", default=None, type=click.Path(path_type=Path),
              help="ReCraft LoRA folder or .safetensors (default: the model's own recraft/, shipped with procseq-tiny).")
@click.option("--no-lora", is_flag=True, help="Run without any ReCraft LoRA (the untrained condition branch).")
@click.option("--max-pixels", default=50_000_000, show_default=True, type=int,
              help="Refuse larger input images (checked before decoding).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--out", "-o", default="outputs/recraft", show_default=True, type=click.Path(path_type=Path),
              help="Output folder: grid.png, frame_XX.png, sequence.gif, sequence.json.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@click.option("--gif-ms", default=600, show_default=True, type=int, help="Milliseconds per frame in sequence.gif.")
def recraft(image: Path, domain: str | None, frames: int, extend: int, prompt: str | None, seed: int,
            steps: int | None, mode: str | None, model: str, lora: Path | None, no_lora: bool, max_pixels: int,
            device: str | None, out: Path, overwrite: bool, gif_ms: int) -> None:
    """ReCraft: the step-by-step process that made IMAGE (PNG/JPEG/WebP of the finished artifact).

    The picture is padded to a square with white and resized to the model's frame size; it is the
    last frame of the output, and the earlier frames are generated.
    """
    import torch

    from procseq.images import open_image
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    if extend < 0:
        raise ValueError(f"--extend must be >= 0, got {extend}.")
    if no_lora and lora is not None:
        raise ValueError("Pass either --lora or --no-lora, not both.")
    check_output_free(out, overwrite)
    picture = open_image(image, max_pixels)  # every bad input fails here, before the model loads
    pipe = load_recraft_pipeline(model, lora=lora, use_lora=not no_lora, device=device)
    pipe.set_progress_bar_config(disable=True)
    with atomic_output_dir(out, overwrite) as tmp:
        generator = torch.Generator("cpu").manual_seed(seed)
        result = pipe(picture, domain=domain, frames=frames, prompt=prompt, extend=extend, mode=mode,
                      num_inference_steps=steps, generator=generator)
        settings = result.metadata[0]
        seq = result.sequences([settings["prompt"]], settings["domain"])[0]
        seq.save(tmp, extra={"seed": seed, "model": str(model), "input": str(image)})
        result.grid[0].save(tmp / "grid.png")
        seq.frames[0].save(tmp / "sequence.gif", save_all=True, append_images=seq.frames[1:], duration=gif_ms, loop=0)
    click.echo(f"wrote {len(seq.frames)} frames to {out} ({settings['timings_s']['total']:.2f} s)")


@main.group()
def adapter() -> None:
    """Multi-domain adapters (asymmetric / masked LoRA): list their domains, export one as a plain LoRA."""


def _adapter_file(model: str, adapters: str | None) -> Path:
    from procseq.models.loading import installed_adapters, resolve_model

    if adapters:
        return Path(adapters)
    found = installed_adapters(resolve_model(model))
    if found is None:
        raise FileNotFoundError(f"{model} has no installed adapters (adapters/adapters.safetensors); pass --adapters FILE.")
    return found


@adapter.command("list")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--adapters", default=None, help="An adapter file to read instead of the model's installed one.")
def adapter_list(model: str, adapters: str | None) -> None:
    """Print the domains of the installed adapters, one per line."""
    from procseq.adapters import adapter_file_info

    for name in adapter_file_info(_adapter_file(model, adapters))["domains"]:
        click.echo(name)


@adapter.command("export")
@click.option("--domain", "-d", default=None, help="The domain to export (one of `procseq adapter list`).")
@click.option("--mix", default=None, help="Export a mix instead of one domain, e.g. 'clay=0.5,sand_art=0.5'.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="The .safetensors file to write.")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--adapters", default=None, help="An adapter file to export from instead of the model's installed one.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def adapter_export(domain: str | None, mix: str | None, out: Path, model: str, adapters: str | None,
                   overwrite: bool) -> None:
    """Write one domain (or a mix) as a plain LoRA that stock FluxPipeline.load_lora_weights loads."""
    from diffusers import FluxTransformer2DModel

    from procseq.adapters import export_domain, load_adapters
    from procseq.models.loading import resolve_model

    if (domain is None) == (mix is None):
        raise ValueError("Pass exactly one of --domain D or --mix 'a=0.5,b=0.5'.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite.")
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must be a .safetensors file, got {out}.")
    file = _adapter_file(model, adapters)
    transformer = FluxTransformer2DModel.from_pretrained(resolve_model(model), subfolder="transformer")
    known = load_adapters(transformer, file)
    if domain is not None and domain not in known:
        raise ValueError(f"Unknown adapter domain {domain!r}; the adapters hold: {', '.join(known)}.")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        export_domain(transformer, domain if domain is not None else parse_mix(mix), tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(f"wrote {out}: load it with FluxPipeline.load_lora_weights('{out}')")


@main.command("init-tiny")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation seed.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def init_tiny(out: Path, seed: int, overwrite: bool) -> None:
    """Build an untrained procseq-tiny (random weights, tokenizers from the corpus vocabulary) in OUT."""
    from procseq.models.tiny import TinyConfig, save_tiny_model
    from procseq.training.run import corpus_texts

    with atomic_output_dir(out, overwrite) as tmp:
        save_tiny_model(tmp, TinyConfig(), texts=corpus_texts(), seed=seed)
    click.echo(f"wrote an untrained procseq-tiny to {out}")


if __name__ == "__main__":
    sys.exit(main())
