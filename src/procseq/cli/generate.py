"""`procseq generate`, `procseq samples`, `procseq bench`: sequences from a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from procseq.cli.adapt import adaptive_config, adaptive_options, check_features, make_interpolator, with_calibration
from procseq.cli.common import (
    ADAPTERS_HELP,
    CFG_HELP,
    KNOWN_HELP,
    MIX_HELP,
    MODEL_HELP,
    atomic_output_dir,
    check_output_free,
    check_sampling,
    check_text,
    main,
    parse_known,
    model_inputs,
    parse_mix,
)
from procseq.cli.options import SectionedCommand, frame_scale_option, loading_notice, report_choices, runtime_options
from procseq.data.synthetic.base import SPLITS
from procseq.models.quantize import check_quantization
from procseq.outputs import check_file_target, write_json_atomic
from procseq.sequence import MODES


GENERATE_SECTIONS = [
    ("What to make", ["prompt", "prompts_file", "domain", "frames", "seed", "plan_file"]),
    ("Layout", ["mode", "frame_size"]),
    ("Known frames (some steps given as pictures)", ["known_items", "known_mode", "lora", "max_pixels"]),
    ("Adaptive steps (insert / delete frames after generating)",
     ["adaptive", "alpha", "beta", "k_add", "k_del", "max_rounds", "recompute_thresholds", "min_frames",
      "max_frames", "interpolator", "features"]),
    ("Output", ["out", "overwrite", "gif_ms", "frame_scale"]),
    ("Sampling and guidance", ["steps", "guidance", "true_cfg_scale", "negative_prompt"]),
    ("Model, adapters and machine", ["model", "adapters", "adapter_mix", "quantize", "dtype", "bf16_autocast",
                                     "threads", "device", "cpu_offload", "compile_model"]),
]


@main.command(cls=SectionedCommand, sections=GENERATE_SECTIONS)
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
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps (default: the model's); --steps is the older name. A process step is a frame.")
@click.option("--guidance", default=None, type=float, help="Guidance scale (default: the model's).")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@runtime_options()
@click.option("--bf16-autocast/--no-bf16-autocast", default=False, show_default=True,
              help="Run the transformer under bf16 autocast (fp32 weights, bf16 matmuls).")
@click.option("--quantize", default="none", show_default=True, type=click.Choice(["none", "int8", "nf4"]),
              help="Quantize the transformer's weights while it loads, through diffusers' quantization_config: int8 "
                   "(torchao; pip install torchao) or nf4 (bitsandbytes, a CUDA GPU). For fitting FLUX.1-dev in "
                   "memory; no faster on the embedded model. Works in every layout and with known frames.")
@click.option("--out", "-o", default="outputs/sequence", show_default=True, type=click.Path(path_type=Path),
              help="Output folder: grid.png, frame_XX.png, sequence.gif, sequence.json, sequence.png (the frames "
                   "enlarged, in reading order, captioned); with --prompts: one "
                   "sub-folder per item, plus batch.json.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists (with --prompts: redo finished items).")
@click.option("--gif-ms", default=600, show_default=True, type=int, help="Milliseconds per frame in sequence.gif.")
@frame_scale_option
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
@click.option("--mode", type=click.Choice(list(MODES)), default="grid", show_default=True,
              help="Layout: grid (the frames in one serpentine grid, up to the model's max_frames), regional "
                   "(each frame its own region driven by its step caption, any number of frames up to 64) or "
                   "frame-by-frame (one frame per pass, conditioned on the plan, its step caption, a step embedding "
                   "and sparse earlier frames; any number of frames).")
@click.option("--plan-memory", is_flag=True,
              help="Print the GPU memory of this generation (weights, activations, peak; with --cpu-offload too), "
                   "computed from the model's config files; loads no weights and generates nothing.")
@click.option("--plan", "plan_file", default=None, type=click.Path(path_type=Path),
              help="A plan.json (from `procseq plan`, or by hand: title, domain, captions, one per step) to generate "
                   "instead of the offline planner's; its title, domain and step count are the defaults of PROMPT, "
                   "--domain and --frames (a --frames given must equal its step count).")
@adaptive_options
def generate(prompt: str | None, prompts_file: Path | None, domain: str, frames: int, seed: int, steps: int | None,
             guidance: float | None, model: str, frame_size: int | None, dtype: str, threads: int | None,
             device: str | None, cpu_offload: bool, compile_model: bool, bf16_autocast: bool, quantize: str, out: Path,
             overwrite: bool, gif_ms: int, frame_scale: int, true_cfg_scale: float | None, negative_prompt: str, adapters: str | None,
             adapter_mix: str | None, known_items: tuple[str, ...], known_mode: str | None, lora: Path | None,
             max_pixels: int, adaptive: bool, features: Path | None, interpolator: str, mode: str,
             plan_file: Path | None, plan_memory: bool, **knobs: Any) -> None:
    """Generate the procedural sequence of PROMPT (the finished artifact) as frames + captions, or one per line
    of --prompts FILE.jsonl.

    With --known, some steps are given as pictures (any cells) and the others are generated to fit.

    \b
    Examples:
      procseq generate "a red lego house with a yellow roof" --domain lego
      procseq generate "a painting of a red star under a sunset sky" --mode frame-by-frame --frames 12
      procseq generate "a red lego house" -d lego --known 0=start.png --frame-scale 4
      procseq -q generate --prompts prompts.jsonl --out outputs/batch
    """
    # ~90 lines: click hands every option to one function; it only routes them (batch file, adaptive, one sequence).
    from procseq.models.loading import precheck

    if plan_memory:
        from procseq.models.memory import plan_sequence

        click.echo(plan_sequence(model, frames, frame_size, mode, len(known_items), dtype, cpu_offload,
                                 2 if (true_cfg_scale or 1.0) > 1 else 1).table())
        return
    if prompts_file is not None:
        if prompt is not None:
            raise ValueError("Give either a PROMPT or --prompts FILE.jsonl, not both.")
        if known_items or plan_file is not None:
            raise ValueError("--known and --plan work with one PROMPT, not with --prompts.")
        check_sampling(frames, steps, frame_size, gif_ms, seed, max_frames=mode_max_frames(mode), guidance=guidance,
                       true_cfg_scale=true_cfg_scale)
        import torch

        defaults = {"domain": domain, "frames": frames, "seed": seed, "steps": steps, "guidance": guidance,
                    "true_cfg_scale": true_cfg_scale, "negative_prompt": negative_prompt,
                    "adapter_mix": parse_mix(adapter_mix), "mode": mode}
        options = {"frame_size": frame_size, "autocast_dtype": torch.bfloat16 if bf16_autocast else None}
        return generate_batch(prompts_file, out, defaults, options, model, dtype, device, cpu_offload, adapters,
                              gif_ms, overwrite, frame_scale)
    check_quantization(quantize)  # the backend is installed (before anything loads); every layout takes it
    if plan_file is not None:  # the plan's title, domain, step count as defaults
        from click.core import ParameterSource

        given, source = load_plan(plan_file), click.get_current_context().get_parameter_source
        prompt = prompt or given.title
        domain = given.domain if source("domain") == ParameterSource.DEFAULT else domain
        frames = given.num_steps if source("frames") == ParameterSource.DEFAULT else frames
    if prompt is None or not check_text(prompt, "prompt").strip():
        raise ValueError("The prompt is empty; describe the finished artifact, e.g. 'a red lego house'.")
    check_text(negative_prompt, "negative prompt")
    check_sampling(frames, steps, frame_size, gif_ms, seed, max_frames=mode_max_frames(mode), guidance=guidance,
                   true_cfg_scale=true_cfg_scale)
    mix = parse_mix(adapter_mix)
    plan = load_plan_file(plan_file, frames)
    known = parse_known(known_items, frames, max_pixels)  # every bad picture fails here, before the model loads
    config = adaptive_config(**knobs) if adaptive else None
    check_features(features, knobs.get("global_features"), knobs.get("local_features"))
    inputs = model_inputs(model, adapters, lora, features, *(i.split("=", 1)[1] for i in known_items),
                          *([plan_file] if plan_file else []))
    check_output_free(out, overwrite, inputs)
    precheck(model, domain, frames, frame_size, adapters, check_frames=mode == "grid")  # bad arguments fail here, before torch loads

    import torch

    from procseq.batch import save_sequence_folder
    from procseq.pipelines.loading import load_pipeline
    from procseq.progress import show_progress

    loading_notice(model)
    pipe = load_pipeline(model, dtype=dtype, device=device, cpu_offload=cpu_offload, adapters=adapters,
                         threads=threads, compile=compile_model, quantize=quantize)
    pipe.set_progress_bar_config(disable=True)  # procseq.progress shows the plan and every pass's steps
    if lora is not None:
        pipe.load_condition_lora(lora)
    report_choices(pipe, frames, frame_size)
    passes = frames - len(known or {}) if mode == "frame-by-frame" else 1  # adaptive insertions add passes
    with atomic_output_dir(out, overwrite, inputs) as tmp, show_progress(passes=passes):
        generator = torch.Generator("cpu").manual_seed(seed)
        result = pipe(prompt, domain=domain, frames=frames, frame_size=frame_size, num_inference_steps=steps,
                      guidance_scale=guidance, generator=generator, adapter_weights=mix,
                      negative_prompt=negative_prompt, true_cfg_scale=true_cfg_scale, known=known,
                      known_mode=known_mode, autocast_dtype=torch.bfloat16 if bf16_autocast else None, mode=mode,
                      plan=plan)
        if config is not None:
            from procseq.models.features import load_feature_extractor
            from procseq.pipelines.adaptive import adapt_output
            from procseq.pipelines.adaptive_rule import edit_lines

            paths = (features, knobs.get("global_features"), knobs.get("local_features"))
            config = with_calibration(config, pipe, next((p for p in paths if p), None), **knobs)
            interp = make_interpolator(interpolator, pipe, prompt, domain, config.calibration,
                                       num_inference_steps=steps, true_cfg_scale=1.0)
            result = adapt_output(result, load_feature_extractor(pipe, *paths), [interp], config, seed)
            for line in edit_lines(result.metadata[0]["adaptive"]):
                click.echo(line)
        record = result.metadata[0].pop("adaptive", None)
        given = {"known_inputs": {str(k): v for k, v in (i.split("=", 1) for i in known_items)}} if known else {}
        plan = {"plan": result.plans[0].to_dict()} if record is not None and result.plans else {}
        extra = {"seed": seed, "model": str(model), **given, **({"adaptive": record, **plan} if record is not None else {})}
        save_sequence_folder(result, prompt, domain, tmp, extra, gif_ms, frame_scale)
    from procseq.planning.vocabulary import unknown_words_note

    if note := unknown_words_note(result.plans, model, domain):
        click.echo(note, err=True)
    click.echo(f"wrote {len(result.frames[0])} frames to {out} ({result.metadata[0]['timings_s']['total']:.2f} s)")


def load_plan_file(path: Path | None, frames: int) -> Any:
    """The ``--plan`` file as a :class:`~procseq.conditioning.plan.Plan` (None without one); its steps must equal `frames`."""
    if path is None:
        return None
    plan = load_plan(path)
    if plan.num_steps != frames:
        raise ValueError(f"The plan {path} has {plan.num_steps} steps but --frames is {frames}; "
                         f"pass --frames {plan.num_steps} (one frame per step) or edit the plan.")
    return plan


def load_plan(path: Path) -> Any:
    """``--plan FILE`` read and checked (a missing path, a folder, a FIFO, bad JSON: one line naming the file)."""
    from procseq.conditioning.plan import Plan

    if not Path(path).exists():
        raise FileNotFoundError(f"--plan {path} does not exist; pass a plan.json (title, domain, captions).")
    return Plan.load(path)


def generate_batch(prompts_file: Path, out: Path, defaults: dict, options: dict, model: str, dtype: str,
                   device: str | None, cpu_offload: bool, adapters: str | None, gif_ms: int, redo: bool,
                   frame_scale: int = 1) -> None:
    """``procseq generate --prompts FILE``: bad lines to stderr, the items, the summary table (main process)."""
    from procseq.batch import check_batch_out, read_prompt_file, run_batch
    from procseq.distributed import process_state
    from procseq.pipelines.loading import load_pipeline

    check_batch_out(out)  # on every process, before anything is written or loaded
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
    from procseq.quiet import NORMAL, verbosity

    report = run_batch(lambda: load_pipeline(model, dtype=dtype, device=device, cpu_offload=cpu_offload,
                                             adapters=adapters),
                       items, bad, out, options, str(model), gif_ms, redo=redo, frame_scale=frame_scale,
                       progress=verbosity() >= NORMAL)
    if main_process:
        click.echo(report.to_markdown())
        click.echo(f"wrote {out}/ ({report.counts['done']} generated, {report.counts['skipped']} already there)")
    if report.counts["failed"] or bad:  # the rest is done; one last line says what to fix
        click.echo(f"procseq: error: {report.counts['failed']} item(s) failed and {len(bad)} line(s) were skipped "
                   f"(listed above and in {out}/batch.json); fix those lines and rerun to do only them.", err=True)
        raise SystemExit(1)



def mode_max_frames(mode: str | None) -> int:
    """The most frames `--frames` may ask for in `mode`: 256 frame by frame (one frame per pass), else 64."""
    from procseq.limits import max_frames

    return max_frames(mode)


@main.command("samples")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--data", default="data_cache/corpus", show_default=True, type=click.Path(path_type=Path),
              help="Corpus folder whose prompts are used.")
@click.option("--split", default="test-compositional", show_default=True,
              type=click.Choice(list(SPLITS)),
              help="Split the prompts come from (test-length and test-paraphrase: a corpus made with "
                   "--lengths any / --wording paraphrase).")
@click.option("--domains", default=None, help="Comma-separated domains (default: the model's domains).")
@click.option("--index", default=0, show_default=True, type=int, help="Which record of each domain.")
@click.option("--seed", default=0, show_default=True, type=int, help="Generation seed.")
@click.option("--with-truth/--no-truth", default=True, show_default=True,
              help="Put each domain's ground-truth sequence under the generated one.")
@click.option("--out", "-o", default="docs/samples.png", show_default=True, type=click.Path(path_type=Path),
              help="PNG to write.")
@runtime_options(frame_size=False)
def samples(model: str, data: Path, split: str, domains: str | None, index: int, seed: int, with_truth: bool,
            out: Path, dtype: str, threads: int | None, device: str | None, cpu_offload: bool,
            compile_model: bool) -> None:
    """One generated sequence per domain (prompts from the corpus) in one labelled PNG."""
    import torch

    from procseq.data.dataset import draw_montage, load_split
    from procseq.eval import render_spec
    from procseq.eval.runner import per_domain
    from procseq.pipelines.loading import load_pipeline

    if index < 0:
        raise ValueError(f"--index must be >= 0, got {index}.")
    pipe = load_pipeline(model, device=device or "cpu", dtype=dtype, threads=threads, cpu_offload=cpu_offload,
                         compile=compile_model)
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
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps (default: the model's); --steps is the older name. A process step is a frame.")
@click.option("--runs", default=5, show_default=True, type=int, help="Timed generations after one warm-up.")
@runtime_options()
@click.option("--bf16-autocast/--no-bf16-autocast", default=False, show_default=True,
              help="Time the transformer under bf16 autocast.")
@click.option("--true-cfg-scale", default=None, type=float, help=CFG_HELP)
@click.option("--compare/--no-compare", default=False, show_default=True,
              help="Also compare fp32 / bf16 autocast and 1 thread / every core, interleaved, on this machine.")
@click.option("--json-out", default=None, type=click.Path(path_type=Path), help="Also write the result as JSON.")
def bench_cmd(model: str, prompt: str, domain: str, frames: int, steps: int | None, runs: int,
              frame_size: int | None, dtype: str, threads: int | None, device: str | None, cpu_offload: bool,
              compile_model: bool,
              bf16_autocast: bool, true_cfg_scale: float | None, compare: bool, json_out: Path | None) -> None:
    """Latency (median/min/max), peak RSS and achieved TFLOP/s (attention included) of one sequence generation;
    what dtype and thread count were chosen for this machine and why; optionally a dtype x threads comparison."""
    if runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}.")
    check_sampling(frames, steps, None, true_cfg_scale=true_cfg_scale)
    if json_out is not None and (json_out.is_dir() or not json_out.parent.is_dir()):
        raise ValueError(f"--json-out {json_out} must be a file name in an existing folder.")
    if json_out is not None:
        check_file_target(json_out, "--json-out")
    from procseq.models.loading import precheck

    precheck(model, domain, frames, frame_size)

    import torch

    from procseq.eval.bench import bench, compare_settings, matmul_peak_tflops, timings_markdown
    from procseq.machine import detect
    from procseq.pipelines.loading import load_pipeline

    info = detect()
    pipe = load_pipeline(model, dtype=dtype, device=device or "cpu", cpu_offload=cpu_offload, threads=threads,
                         compile=compile_model)
    pipe.set_progress_bar_config(disable=True)
    flags = ", ".join(f for f, on in (("avx512_bf16", info.cpu_bf16), ("AMX", info.cpu_amx)) if on) or "no bf16 units"
    click.echo(f"machine: {info.cpu} ({flags}), {info.cores} cores, load {info.load:.1f}"
               + (f", GPU {info.cuda}" if info.cuda else ""))
    for name, c in pipe.machine_choices.items():
        click.echo(f"{name}: {c.value} ({c.reason})")
    fp32 = matmul_peak_tflops(torch.float32)
    bf16 = f"{matmul_peak_tflops(torch.bfloat16):.3f}" if info.cpu_bf16 else "not measured (emulated on this CPU)"
    click.echo(f"matmul peak (4096x1024 @ 1024x1024, TFLOP/s): fp32 {fp32:.3f}, bf16 {bf16}")
    autocast = torch.bfloat16 if bf16_autocast else None
    result = bench(pipe, prompt, domain, frames, steps, runs, autocast, true_cfg_scale, frame_size)
    click.echo(result.to_markdown())
    record = result.to_dict() | {"machine": info.to_dict(),
                                 "choices": {k: vars(v) for k, v in pipe.machine_choices.items()}}
    if compare:
        common = {"num_inference_steps": steps, "true_cfg_scale": true_cfg_scale, "frame_size": frame_size}
        settings = {f"{dt}, {n} thread{'s' * (n > 1)}": common | {"threads": n, "autocast_dtype": amp}
                    for dt, amp in (("fp32", None), ("bf16 autocast", torch.bfloat16))
                    for n in sorted({1, info.cores})}
        rows = compare_settings(pipe, settings, prompt, domain, frames, runs)
        click.echo(timings_markdown(rows))
        record["compare"] = [vars(r) for r in rows]
    if json_out:
        write_json_atomic(json_out, record)
