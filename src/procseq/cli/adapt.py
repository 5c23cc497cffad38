"""`procseq adapt`: adaptive steps on an existing sequence folder; the options `generate --adaptive` shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from procseq.cli.common import MODEL_HELP, atomic_output_dir, check_output_free, main
from procseq.cli.options import frame_scale_option, loading_notice

ADAPTIVE_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--alpha", default=0.4, show_default=True, type=float,
                 help="Adaptive steps: weight of the global (image-embedding) difference."),
    click.option("--beta", default=0.4, show_default=True, type=float,
                 help="Adaptive steps: weight of the local (nearest-patch) difference; the semantic (caption) "
                      "difference gets 1 - alpha - beta."),
    click.option("--k-add", default=2.0, show_default=True, type=float,
                 help="Adaptive steps: insert where the difference exceeds mu + k_add * sigma."),
    click.option("--k-del", default=1.5, show_default=True, type=float,
                 help="Adaptive steps: delete where the difference falls below mu - k_del * sigma."),
    click.option("--max-rounds", default=3, show_default=True, type=int,
                 help="Adaptive steps: budget of sliding-window rounds (stops earlier at a fixed point)."),
    click.option("--recompute-thresholds", is_flag=True,
                 help="Adaptive steps: recompute the thresholds at every round (default: the input sequence's hold)."),
    click.option("--min-frames", default=2, show_default=True, type=int,
                 help="Adaptive steps: never fewer frames than this (at least 2)."),
    click.option("--max-frames", default=None, type=int,
                 help="Adaptive steps: never more frames than this (default: twice the input's)."),
    click.option("--interpolator", default="auto", show_default=True,
                 type=click.Choice(["auto", "average", "model", "sequence"]),
                 help="Adaptive steps: how an inserted frame is made: the neighbours' pixel average (no model call), "
                      "generated from both neighbours (model: known frames 0 and 2 of a 3-frame generation; "
                      "procseq-tiny v2 has no two-reference model, so this is the base model in place), or from the "
                      "whole sequence (sequence: every frame known, the gap the one free cell); auto: the one the "
                      "calibration found best on the domain's training sequences (else the average)."),
    click.option("--rule", default="calibrated", show_default=True, type=click.Choice(["calibrated", "sequence"]),
                 help="Adaptive steps: thresholds from the training split's ground truth (the calibration beside the "
                      "model; --k-add/--k-del/--alpha/--beta then do not apply) or from the sequence's own "
                      "mu +/- k sigma (ProcessMaker's rule). A domain the calibration lacks uses the latter."),
    click.option("--calibration", default=None, type=click.Path(path_type=Path),
                 help="Adaptive steps: a calibration JSON (default: adaptive_calibration.json in the model folder)."),
    click.option("--local-form", default="patch", show_default=True, type=click.Choice(["patch", "nearest"]),
                 help="Adaptive steps (sequence rule): the local term as position-aligned patch distance or as "
                      "nearest-patch distance."),
    click.option("--global-features", default=None, type=click.Path(path_type=Path),
                 help="Adaptive steps: a LOCAL CLIP folder for the global term only (ProcessMaker: CLIP global, "
                      "DINO local; with --local-features)."),
    click.option("--local-features", default=None, type=click.Path(path_type=Path),
                 help="Adaptive steps: a LOCAL DINOv2 (or CLIP) folder for the local term only (patch tokens)."),
    click.option("--features", default=None, type=click.Path(path_type=Path),
                 help="Adaptive steps: a LOCAL CLIP or DINOv2 folder for the image features (default: the "
                      "model's own VAE encoder and CLIP text encoder)."),
]


def adaptive_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the adaptive-steps options (alpha, beta, k_add, k_del, max_rounds, min/max_frames, features)."""
    for option in reversed(ADAPTIVE_OPTIONS):
        fn = option(fn)
    return fn


def adaptive_config(alpha: float, beta: float, k_add: float, k_del: float, max_rounds: int, min_frames: int,
                    max_frames: int | None, recompute_thresholds: bool = False, local_form: str = "patch",
                    **_: Any) -> Any:
    """The :class:`~procseq.pipelines.adaptive.AdaptiveConfig` of the options (checked: ``ValueError`` on bad values)."""
    from procseq.limits import MAX_PLAN_STEPS, check_float
    from procseq.pipelines.adaptive import AdaptiveConfig

    for name, value in (("--alpha", alpha), ("--beta", beta), ("--k-add", k_add), ("--k-del", k_del)):
        check_float(value, name)  # finite: NaN/inf would otherwise fail only when the record is written
    if max_rounds > 100:  # the lower bounds are AdaptiveConfig's own checks
        raise ValueError(f"--max-rounds must be at most 100, got {max_rounds}.")
    if max_frames is not None and max_frames > MAX_PLAN_STEPS:
        raise ValueError(f"--max-frames must be at most {MAX_PLAN_STEPS}, got {max_frames}.")
    return AdaptiveConfig(alpha=alpha, beta=beta, k_add=k_add, k_del=k_del, max_rounds=max_rounds,
                          min_frames=min_frames, max_frames=max_frames, recompute=recompute_thresholds,
                          local=local_form)


def with_calibration(config: Any, pipe: Any, features: Path | None, rule: str = "calibrated",
                     calibration: Path | None = None, **_: Any) -> Any:
    """`config` with the training calibration for ``--rule calibrated`` (the model folder's, or `calibration`).

    A calibration measured with the model's own features does not apply to ``--features`` (other units): then
    the sequence rule is used and a note says so.
    """
    from dataclasses import replace

    from procseq.pipelines.adaptive_rule import Calibration, find_calibration

    if rule != "calibrated":
        return config
    path = calibration or find_calibration(pipe.model_folder)
    if path is None:
        click.echo("note: the model has no adaptive calibration; using the sequence rule (mu +/- k sigma).", err=True)
        return config
    cal = Calibration.load(path)
    if features is not None and cal.extractor == "model":
        click.echo(f"note: {path} was calibrated on the model's own features, not --features; using the sequence "
                   "rule (mu +/- k sigma).", err=True)
        return config
    return replace(config, calibration=cal)


def make_interpolator(kind: str, pipe: Any, prompt: str, domain: str, calibration: Any = None,
                      **call_kwargs: Any) -> Any:
    """The insertion for ``--interpolator``: the neighbours' average, or the model through known frames from both
    neighbours (``model``: a 3-frame call) or from the whole sequence (``sequence``: the gap its one free cell);
    ``auto``: the one `calibration` chose for `domain` (the average without one).

    The model insertion runs on `pipe` itself with its multi-domain adapters (if any) switched off for the
    call, i.e. the base model and its condition LoRA, as the condition LoRA was trained (no second copy).
    """
    from procseq.pipelines.insertion import make_insertion

    if kind == "auto":
        known = calibration is not None and domain in calibration.domains
        kind = calibration.domains[domain].insertion if known else "average"
    return make_insertion(kind, pipe, prompt, domain, base_only=True, allow_unseen=True, **call_kwargs)


def check_features(*paths: Path | None) -> None:
    """Refuse a --features/--global-features/--local-features folder that is not a local checkpoint (before any
    model loads)."""
    for path in paths:
        if path is not None and not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a local CLIP/DINOv2 checkpoint folder (no config.json); pass a "
                                    "folder written by save_pretrained, or leave the option out.")


def write_sequence(seq: Any, out: Path, extra: dict[str, Any], gif_ms: int = 600, frame_scale: int = 1) -> None:
    """frame_XX.png, sequence.json, grid.png, sequence.gif and sequence.png of `seq` into `out`."""
    from procseq.sheet import write_sequence_folder

    write_sequence_folder(seq, out, None, extra, gif_ms, frame_scale)


def load_sequence_folder(folder: Path) -> Any:
    """A sequence folder written by ``procseq generate`` (``ValueError``/``FileNotFoundError`` saying what is wrong)."""
    from procseq.sequence import Sequence

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass a sequence folder written by `procseq generate`.")
    if not (folder / "sequence.json").is_file():
        raise FileNotFoundError(f"{folder} is not a procseq sequence folder (no sequence.json); pass a folder "
                                "written by `procseq generate`.")
    try:
        return Sequence.load(folder)  # bad JSON of any shape: a ValueError naming the file (procseq.jsonio)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{folder / 'sequence.json'} lacks {err} (a sequence needs prompt, domain, num_frames "
                         "and captions); regenerate the sequence.") from err


@main.command("adapt")
@click.argument("sequence_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder: the adapted frame_XX.png, grid.png, sequence.gif, sequence.json, sequence.png.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@click.option("--model", "-m", default=None, help=MODEL_HELP + " Default: the one in sequence.json, else procseq-tiny.")
@click.option("--lora", default=None, type=click.Path(path_type=Path),
              help="Condition LoRA for the insertions (default: the model's own).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the inserted frames.")
@click.option("--denoise-steps", "--steps", "steps", default=None, type=int,
              help="Euler denoising steps of an insertion (default: the model's); --steps is the older name.")
@click.option("--true-cfg-scale", default=1.0, show_default=True, type=float,
              help="True CFG of an insertion (1 = off; the two known neighbours carry the picture).")
@click.option("--no-insert", is_flag=True, help="Only delete.")
@click.option("--no-delete", is_flag=True, help="Only insert.")
@frame_scale_option
@adaptive_options
def adapt(sequence_dir: Path, out: Path, overwrite: bool, model: str | None, lora: Path | None, seed: int,
          steps: int | None, true_cfg_scale: float, no_insert: bool, no_delete: bool, features: Path | None,
          interpolator: str, rule: str, calibration: Path | None, global_features: Path | None,
          local_features: Path | None, frame_scale: int = 1, **knobs: Any) -> None:
    """Adaptive steps on SEQUENCE_DIR (a folder written by `procseq generate`): insert a frame where neighbours
    differ too much, delete one where they differ too little; the decisions go into sequence.json."""
    from dataclasses import replace

    from procseq.models.features import load_feature_extractor
    from procseq.pipelines.loading import load_pipeline
    from procseq.pipelines.adaptive import adapt_sequence
    from procseq.pipelines.adaptive_rule import edit_lines

    config = replace(adaptive_config(**knobs), insert=not no_insert, delete=not no_delete)
    check_features(features, global_features, local_features)
    if calibration is not None and not Path(calibration).is_file():
        raise FileNotFoundError(f"--calibration {calibration} does not exist; pass a file written by "
                                "python -m experiments.adaptive_calibration (in a procseq checkout), or leave it out.")
    seq = load_sequence_folder(sequence_dir)
    if seq.num_frames < 2:
        raise ValueError(f"{sequence_dir} holds {seq.num_frames} frame; adaptive steps need at least 2.")
    if config.max_frames is not None and seq.num_frames > config.max_frames and no_delete:
        raise ValueError(f"The sequence has {seq.num_frames} frames, more than --max-frames {config.max_frames}, and "
                         "--no-delete forbids removing any; raise --max-frames.")
    inputs = [sequence_dir, lora, calibration, global_features, local_features]  # never replaced by the output
    check_output_free(out, overwrite, inputs)
    model = model or seq.meta.get("model") or "procseq-tiny"
    loading_notice(model)
    pipe = load_pipeline(model, device="cpu", adapters="none")
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_condition_lora(lora)
    other_features = features or global_features or local_features
    config = with_calibration(config, pipe, other_features, rule, calibration)
    interp = make_interpolator(interpolator, pipe, seq.prompt, seq.domain, config.calibration,
                               num_inference_steps=steps, true_cfg_scale=true_cfg_scale)
    extractor = load_feature_extractor(pipe, features, global_features, local_features)
    from procseq.progress import show_progress

    with show_progress("inserting frames", passes=None):
        result = adapt_sequence(seq, extractor, None if no_insert else interp, config, seed)
    result.meta["adaptive"]["source"] = str(sequence_dir)
    with atomic_output_dir(out, overwrite, inputs) as tmp:
        write_sequence(result, tmp, extra={}, frame_scale=frame_scale)
    rec = result.meta["adaptive"]
    for line in edit_lines(rec):
        click.echo(line)
    click.echo(f"wrote {result.num_frames} frames to {out} ({rec['inserted']} inserted, {rec['deleted']} deleted, "
               f"stopped: {rec['stopped']})")
