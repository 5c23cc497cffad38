"""`procseq recraft IMAGE` (the last step known) and `procseq continue IMAGE...` (the first steps known)."""

from __future__ import annotations

from pathlib import Path

import click

from procseq.cli.common import (
    MODEL_HELP,
    atomic_output_dir,
    check_output_free,
    check_positive,
    check_sampling,
    check_text,
    main,
    model_inputs,
    one_line,
)
from procseq.cli.options import frame_scale_option, loading_notice, report_choices, runtime_options
from procseq.limits import MAX_EXTEND, check_int
from procseq.outputs import disk_full_message


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
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps (default: the model's); --steps is the older name. A process step is a frame.")
@click.option("--mode", type=click.Choice(["concat", "inplace"]), default=None,
              help="Condition tokens (concat) or in-place overwrite of the final cell (default: the LoRA's mode).")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--lora", default=None, type=click.Path(path_type=Path),
              help="Condition LoRA folder or .safetensors (default: the model's own known_frames/, shipped with procseq-tiny).")
@click.option("--no-lora", is_flag=True, help="Run without any condition LoRA (the untrained condition branch).")
@click.option("--max-pixels", default=50_000_000, show_default=True, type=int,
              help="Refuse larger input images (checked before decoding).")
@runtime_options()
@click.option("--out", "-o", default="outputs/recraft", show_default=True, type=click.Path(path_type=Path),
              help="Output folder: grid.png, frame_XX.png, sequence.gif, sequence.json, sequence.png (the frames "
                   "enlarged, in reading order, captioned).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@click.option("--gif-ms", default=600, show_default=True, type=int, help="Milliseconds per frame in sequence.gif.")
@frame_scale_option
def recraft(image: Path, domain: str | None, frames: int, extend: int, prompt: str | None, seed: int,
            steps: int | None, mode: str | None, model: str, lora: Path | None, no_lora: bool, max_pixels: int,
            frame_size: int | None, dtype: str, threads: int | None, device: str | None, cpu_offload: bool,
            compile_model: bool,
            out: Path, overwrite: bool, gif_ms: int, frame_scale: int) -> None:
    """ReCraft: the step-by-step process that made IMAGE (PNG/JPEG/WebP of the finished artifact).

    The picture is padded to a square with white and resized to the model's frame size; it is the
    last frame of the output, and the earlier frames are generated.
    """
    from procseq.images import open_image
    from procseq.models.loading import precheck

    check_int(extend, "--extend", 0, MAX_EXTEND)
    if no_lora and lora is not None:
        raise ValueError("Pass either --lora or --no-lora, not both.")
    if prompt is not None:
        check_text(prompt, "prompt")
    check_sampling(frames, steps, None, gif_ms, seed)
    check_positive(max_pixels, "--max-pixels")
    inputs = model_inputs(image, lora, model)
    check_output_free(out, overwrite, inputs)
    precheck(model, domain, frames, frame_size, adapters="none")  # before torch loads
    picture = open_image(image, max_pixels)  # every bad input fails here, before the model loads

    import torch

    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    loading_notice(model)
    try:
        pipe = load_recraft_pipeline(model, lora=lora, use_lora=not no_lora, device=device, dtype=dtype,
                                     cpu_offload=cpu_offload, threads=threads, compile=compile_model)
    except OSError as err:  # peft/diffusers report a damaged LoRA file as OSError
        if lora is None or disk_full_message(err):
            raise
        raise ValueError(f"Could not load the condition LoRA {lora}: {one_line(err)}") from err
    pipe.set_progress_bar_config(disable=True)
    report_choices(pipe, frames, frame_size)
    from procseq.batch import save_sequence_folder
    from procseq.progress import show_progress

    with atomic_output_dir(out, overwrite, inputs) as tmp, show_progress(passes=None):  # --extend: a pass more each
        generator = torch.Generator("cpu").manual_seed(seed)
        result = pipe(picture, domain=domain, frames=frames, prompt=prompt, extend=extend, known_mode=mode,
                      num_inference_steps=steps, generator=generator, frame_size=frame_size)
        settings = result.metadata[0]
        save_sequence_folder(result, settings["prompt"], settings["domain"], tmp,
                             {"seed": seed, "model": str(model), "input": str(image)}, gif_ms, frame_scale)
    if result.plans and result.plans[0].meta.get("note"):  # the picture could not be read for the captions
        click.echo(result.plans[0].meta["note"], err=True)
    click.echo(f"wrote {len(result.frames[0])} frames to {out} ({settings['timings_s']['total']:.2f} s)")


@main.command("continue")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--prompt", "-p", required=True, help="The finished artifact, e.g. 'a LEGO tower of eight bricks'.")
@click.option("--domain", "-d", default=None,
              help="Process domain (default: the model's first domain, 'painting' for procseq-tiny).")
@click.option("--frames", "-n", default=9, show_default=True, type=int,
              help="Frames of the whole sequence, the given ones included (9 -> 3x3, 4 -> 2x2).")
@click.option("--seed", "-s", default=0, show_default=True, type=int, help="Random seed (same seed, same output).")
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps (default: the model's); --steps is the older name. A process step is a frame.")
@click.option("--mode", type=click.Choice(["concat", "inplace"]), default=None,
              help="Condition tokens (concat) or in-place overwrite of the known cells (default: the LoRA's mode).")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--lora", default=None, type=click.Path(path_type=Path),
              help="Condition LoRA folder or .safetensors (default: the model's own known_frames/).")
@click.option("--max-pixels", default=50_000_000, show_default=True, type=int,
              help="Refuse larger input images (checked before decoding).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--out", "-o", default="outputs/continue", show_default=True, type=click.Path(path_type=Path),
              help="Output folder: grid.png, frame_XX.png, sequence.gif, sequence.json, sequence.png (the frames "
                   "enlarged, in reading order, captioned).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@click.option("--gif-ms", default=600, show_default=True, type=int, help="Milliseconds per frame in sequence.gif.")
@frame_scale_option
def continue_(images: tuple[Path, ...], prompt: str, domain: str | None, frames: int, seed: int, steps: int | None,
              mode: str | None, model: str, lora: Path | None, max_pixels: int, device: str | None, out: Path,
              overwrite: bool, gif_ms: int, frame_scale: int) -> None:
    """Continue a half-finished work: IMAGES are its first steps, in order; the rest of the process is generated."""
    import torch

    from procseq.conditioning.frames import check_known_indices
    from procseq.images import open_image
    from procseq.models.loading import precheck
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    if not check_text(prompt, "prompt").strip():
        raise ValueError("The prompt is empty; describe the finished artifact, e.g. 'a red lego house'.")
    check_sampling(frames, steps, None, gif_ms, seed)
    check_positive(max_pixels, "--max-pixels")
    check_known_indices(range(len(images)), frames)
    inputs = model_inputs(model, lora, *images)
    check_output_free(out, overwrite, inputs)
    base = precheck(model, domain, frames, check_frames=False).domains  # an unknown domain fails here, before loading
    pictures = [open_image(path, max_pixels) for path in images]  # every bad input fails before the model loads
    # an adapter domain the model ships (clay, sand_art for procseq-tiny) needs its adapters loaded
    adapters = None if domain is not None and base and domain not in base else "none"
    loading_notice(model)
    pipe = load_recraft_pipeline(model, lora=lora, device=device, adapters=adapters)
    pipe.set_progress_bar_config(disable=True)
    from procseq.batch import save_sequence_folder
    from procseq.progress import show_progress

    with atomic_output_dir(out, overwrite, inputs) as tmp, show_progress(passes=1):
        result = pipe.continue_sequence(pictures, prompt, domain=domain, frames=frames, known_mode=mode,
                                        num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed))
        settings = result.metadata[0]
        save_sequence_folder(result, prompt, settings["domain"], tmp,
                             {"seed": seed, "model": str(model), "inputs": [str(p) for p in images]}, gif_ms, frame_scale)
    if result.plans and result.plans[0].meta.get("note"):  # the picture could not be read for the captions
        click.echo(result.plans[0].meta["note"], err=True)
    click.echo(f"wrote {len(result.frames[0])} frames to {out} ({settings['timings_s']['total']:.2f} s)")
