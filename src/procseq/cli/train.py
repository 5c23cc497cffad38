"""`procseq train [base|adapter|known-frames] CONFIG` and `procseq init-tiny`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from procseq.cli.common import atomic_output_dir, main

if TYPE_CHECKING:
    from procseq.training.config import RunConfig


class TrainGroup(click.Group):
    """``procseq train CONFIG`` (the base model) or ``procseq train adapter|known-frames CONFIG``."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["base", *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[base|adapter|known-frames|frame-by-frame|regional] CONFIG [OPTIONS]")

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The presets CONFIG may name, each with the first line of its file's comment."""
        with formatter.section("Presets (CONFIG may be one of these names)"):
            formatter.write_dl(preset_rows())
        super().format_epilog(ctx, formatter)


def preset_rows() -> list[tuple[str, str]]:
    """``(name, summary)`` of every shipped preset (the summary: its YAML's first comment line)."""
    from procseq.training.config import PRESET_DIR, presets

    rows = []
    for name in presets():
        lines = (PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
        comment = next((line.lstrip("# ").strip() for line in lines if line.startswith("#")), "")
        rows.append((name, comment))
    return rows


@main.group(cls=TrainGroup)
def train() -> None:
    """Train from a YAML CONFIG (a file or a preset name); every run resumes from its newest checkpoint.

    \b
    procseq train CONFIG            the base model (transformer, optionally text encoders / VAE)
    procseq train adapter CONFIG    multi-domain adapters (asymmetric / masked LoRA) on a frozen base
    procseq train known-frames CONFIG   the condition LoRA for known frames (ReCraft, continuation, interpolation)
    procseq train frame-by-frame CONFIG the frame-by-frame LoRA + step embedding (Loom)
    procseq train regional CONFIG   the regional LoRA (CookAnything's trained mode)

    Many processes: `torchrun --standalone --nproc_per_node N -m procseq.cli train ...` (CPUs or GPUs), or
    `accelerate launch --multi_gpu --num_processes N -m procseq.cli train ...` (GPUs).
    """


def run_config_command(name: str) -> Callable[[Callable[[RunConfig], str]], click.Command]:
    """A ``procseq train NAME CONFIG`` command: CONFIG plus ``--max-steps``, ``--output-dir`` and ``--set``.

    The decorated function gets the loaded :class:`~procseq.training.config.RunConfig`, trains, and
    returns the line to print.
    """

    def decorate(run: Callable[[RunConfig], str]) -> click.Command:
        @train.command(name)
        @click.argument("config")
        @click.option("--max-steps", default=None, type=int, help="Override train.max_steps.")
        @click.option("--output-dir", default=None, help="Override train.output_dir.")
        @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override any config value: --set section.key=VALUE (YAML value; repeatable), "
                           "e.g. --set adapter.kind=masked.")
        @click.option("--plan-memory", is_flag=True,
                      help="Print the GPU memory of one training step (weights, optimizer state, activations, peak "
                           "per GPU), computed from the model's config files; loads no weights and trains nothing.")
        @click.option("--plan-shape", default="9x336", show_default=True, metavar="FRAMESxPX",
                      help="With --plan-memory: the training sequences, FRAMES frames of PX pixels (9x336: a 1008 px grid).")
        @click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
                      help="With --plan-memory: the processes (GPUs) of the launch; train.shard: fsdp divides by them.")
        @functools.wraps(run)
        def command(config: str, max_steps: int | None, output_dir: str | None, overrides: tuple[str, ...],
                    plan_memory: bool, plan_shape: str, processes: int) -> None:
            from procseq.training.config import RunConfig

            cfg = RunConfig.from_yaml(config, overrides=overrides)
            if max_steps is not None:
                cfg.train.max_steps = max_steps
            if output_dir is not None:
                cfg.train.output_dir = output_dir
            cfg.validate()
            if plan_memory:
                from procseq.training.memory import parse_shape, plan_training

                click.echo(plan_training(cfg, name, *parse_shape(plan_shape), processes=processes).table())
                return
            line = run(cfg)
            from procseq.distributed import process_state

            if process_state().is_main_process:  # once, not once per process
                click.echo(line)

        return command

    return decorate


def trained(result: Any, what: str) -> str:
    """The one line a finished training command prints."""
    return f"trained to step {result.step} (loss {result.loss:.4f}, {result.seconds:.0f} s); {what}"


@run_config_command("base")
def train_base(cfg: RunConfig) -> str:
    """Train the Flux transformer with flow matching from CONFIG (e.g. the `tiny` preset). With a `layouts`
    section (weights per layout: grid, regional, frame-by-frame; known-frame sets; step_tokens) every sequence is
    drawn into one of the layouts and the model learns them all at once (the `tiny-v3` preset)."""
    from procseq.training.layouts import run_layout_training
    from procseq.training.run import run_training

    result = run_layout_training(cfg) if cfg.layouts.weights else run_training(cfg)
    return trained(result, f"model: {result.model_dir}")


@run_config_command("adapter")
def train_adapter(cfg: RunConfig) -> str:
    """Train a multi-domain adapter (asymmetric / masked / one standard LoRA) on a frozen base, from CONFIG
    (e.g. the `adapters` preset). Writes OUTPUT_DIR/model/adapters.safetensors; use it with
    `procseq generate --adapters FILE --domain D`. Adapter options (--set adapter.KEY=VALUE): kind
    (asymmetric|masked|lora), rank, alpha, rank_pattern/alpha_pattern (per layer), masked: mask (rank|rows),
    row_mask (fixed|learned), domain_fraction; freeze_a (train only the Bs), init_from (start from a file).
    """
    from procseq.training.adapters import run_adapter_training

    result = run_adapter_training(cfg)
    return trained(result, f"adapters: {result.model_dir / 'adapters.safetensors'}")


@run_config_command("known-frames")
def train_known_frames(cfg: RunConfig) -> str:
    """Train the condition LoRA (known frames at any cells: ReCraft, continuation, interpolation) on a
    frozen base from CONFIG (e.g. the `known_frames` preset; --set known_frames.mode=inplace for the
    in-place variant). Writes OUTPUT_DIR/model/ (pytorch_lora_weights.safetensors, known_frames.json);
    use it with `procseq generate --known ... --lora DIR` or `procseq recraft IMAGE --lora DIR`.
    """
    from procseq.training.known_frames import run_known_frames_training

    result = run_known_frames_training(cfg)
    return trained(result, f"LoRA: {result.model_dir}")


@run_config_command("frame-by-frame")
def train_frame_by_frame(cfg: RunConfig) -> str:
    """Train the frame-by-frame LoRA and Loom's step embedding (history at sparse indices with the rotation
    offset) on a frozen base from CONFIG (e.g. the `frame_by_frame` preset). Writes OUTPUT_DIR/model/
    (pytorch_lora_weights.safetensors, step_embedding.safetensors, frame_by_frame.json); use it with
    `procseq generate --mode frame-by-frame` after copying it to the model's frame_by_frame/ folder.
    """
    from procseq.training.frame_by_frame import run_frame_by_frame_training

    result = run_frame_by_frame_training(cfg)
    return trained(result, f"frame-by-frame weights: {result.model_dir}")


@run_config_command("regional")
def train_regional(cfg: RunConfig) -> str:
    """Train the regional LoRA (CookAnything's trained mode: frames as regions, each driven by its step caption,
    under the step-wise mask) on a frozen base from CONFIG (section `regional`: rank, alpha, blend, fusion,
    per_domain). Writes OUTPUT_DIR/model/ (weights, regional.json); use it with `procseq generate --mode regional`
    after copying it to the model's regional/ folder.
    """
    from procseq.training.regional import run_regional_training

    result = run_regional_training(cfg, cfg.regional)
    return trained(result, f"regional LoRA: {result.model_dir}")


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
