"""Regional-mode measurement (issue 13): grid vs regional (training-free, trained) and the ablations.

    python -m experiments.regional --out runs/eval-regional --n 10 --split test-compositional \\
        --variant grid=grid --variant regional=regional --variant no-mask=regional:mask=0 \\
        --variant a0=regional:blend=0 --variant grid-ids=regional:ids=grid --variant no-fusion=regional:fusion=0

A variant is ``NAME=grid`` or ``NAME=regional[:key=value,...]`` with the keys of
:class:`~procseq.layouts.regional.RegionalConfig` (``mask``, ``blend``, ``mask_steps``, ``ids``, ``fusion``) and
``lora=FOLDER`` (a regional LoRA, :mod:`procseq.training.regional`; ``lora=shipped``: the model's own). Without
``lora`` a regional variant is training-free. Every variant generates the first `n`
records per domain of the split (optionally only those of ``--frames`` steps) from the record's prompt and its
true step captions (``--captions plan``: the planner's, as ``procseq eval --mode`` samples), seed =
:func:`procseq.eval.runner.record_seed`, and is scored by the shared scorer
(:func:`procseq.eval.scorer.score_folders`): step accuracy, attribute accuracy, cross-step consistency. Beside them: seconds per sequence, the process's peak RSS, and two diagnostics for CookAnything's failure modes:
step accuracy over the last third of the frames ("late steps"), and the share of adjacent frames that repeat
each other (mean absolute difference < 2/255). ``--default NAME`` adds ``paired.md``: each variant's paired
difference to NAME with its 95 % bootstrap interval (:func:`experiments.ablation.paired_table`).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.ablation import corpus_records, eval_call, paired_table
from experiments.common import add_common_arguments

REPEAT_THRESHOLD = 2.0
"""Mean absolute difference (0..255) under which two adjacent generated frames count as a repeat."""
CONFIG_KEYS = {"mask": lambda v: v not in ("0", "false", "no"), "blend": float, "mask_steps": float, "ids": str,
               "fusion": float}


def parse_variant(text: str) -> tuple[str, str, dict[str, Any], str | None]:
    """``NAME=grid`` or ``NAME=regional[:k=v,...]`` -> ``(name, mode, config kwargs, lora folder)``."""
    name, _, spec = text.partition("=")
    mode, _, options = spec.partition(":")
    if not name or mode not in ("grid", "regional"):
        raise ValueError(f"Variant {text!r}: write NAME=grid or NAME=regional[:key=value,...].")
    config: dict[str, Any] = {}
    lora = None
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        if key == "lora":
            lora = value
        elif key in CONFIG_KEYS:
            config[key] = CONFIG_KEYS[key](value)
        else:
            raise ValueError(f"Variant {text!r}: unknown key {key!r}; use {', '.join([*CONFIG_KEYS, 'lora'])}.")
    if mode == "grid" and (config or lora):
        raise ValueError(f"Variant {text!r}: grid mode takes no options.")
    return name, mode, config, lora


def diagnostics(report: Any, folders: list[Path]) -> dict[str, float]:
    """Late-step accuracy (last third of each sequence, from the scores of `report`) and the share of repeated
    adjacent frames (read from the sequence `folders`)."""
    from procseq.sequence import Sequence

    late, repeats = [], []
    for score in report.scores:
        n = len(score.frames)
        late += [f.step_correct for f in score.frames[n - max(1, n // 3):]]
    for folder in folders:
        arrays = [np.asarray(f, dtype=np.float32) for f in Sequence.load(folder).frames]
        repeats += [float(np.abs(a - b).mean()) < REPEAT_THRESHOLD for a, b in zip(arrays, arrays[1:])]
    return {"late_step_acc": float(np.mean(late)), "repeat_rate": float(np.mean(repeats))}


def run_variant(variant: str, records: list[dict[str, Any]], out: Path, model: str | None, steps: int | None,
                true_cfg_scale: float | None, captions: str = "truth") -> dict[str, Any]:
    """Generate and score one variant on `records` (`captions`: the records' own, ``truth``, or the planner's,
    ``plan``, as ``procseq eval``); returns its summary (also written to ``out/NAME/summary.json``)."""
    from procseq.eval.runner import evaluate_records
    from procseq.pipelines.loading import load_pipeline
    from procseq.layouts.regional import RegionalConfig

    name, mode, options, lora = parse_variant(variant)
    pipe = load_pipeline(model or "procseq-tiny", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    if lora and lora != "shipped":
        from procseq.layouts.regional import load_regional_lora

        load_regional_lora(pipe, lora)
    config = RegionalConfig(**options, lora=lora is not None) if mode == "regional" else None
    seconds: list[float] = []

    def frames_fn(record: dict[str, Any], seed: int) -> list:
        t = time.perf_counter()
        frames = eval_call(pipe, record, seed, captions, steps, true_cfg_scale, mode=mode, regional=config)
        seconds.append(time.perf_counter() - t)
        return frames

    report = evaluate_records(frames_fn, records, out / name, progress=False, name=name,
                              meta={"variant": variant, "model": model or "procseq-tiny"})
    folders = sorted((out / name / "sequences").iterdir())
    overall = report.summary["overall"]
    summary = {"variant": variant, "n": overall["n"],
               **{k: overall[k] for k in ("step_acc", "attribute_acc", "consistency", "psnr", "similarity")},
               **diagnostics(report, folders), "seconds_per_sequence": float(np.median(seconds)),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "domains": {d: {k: s[k] for k in ("step_acc", "attribute_acc", "consistency")}
                           for d, s in report.summary["domains"].items()}}
    (out / name / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """One row per variant: the scores, the diagnostics, time and memory."""
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["| variant | n | step acc | attribute acc | consistency | late-step acc | repeats | PSNR | s / sequence "
             "| peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        lines.append(f"| {name} | {s['n']} | {f(s['step_acc'])} | {f(s['attribute_acc'])} | {f(s['consistency'])} | "
                     f"{f(s['late_step_acc'])} | {f(s['repeat_rate'])} | {s['psnr']:.2f} | "
                     f"{s['seconds_per_sequence']:.2f} | {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    from procseq.eval.report import load_report

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    p.add_argument("--split", default="test-compositional")
    p.add_argument("--frames", default=None, type=int, help="only records of this many steps (any-length corpus)")
    p.add_argument("--variant", action="append", required=True, help="NAME=grid | NAME=regional[:k=v,...]")
    p.add_argument("--steps", default=None, type=int, help="Euler steps (default: the model's)")
    p.add_argument("--true-cfg-scale", default=None, type=float, help="true CFG (default: the model's)")
    p.add_argument("--captions", choices=["truth", "plan"], default="truth",
                   help="the records' own captions, or the planner's (what procseq eval samples)")
    p.add_argument("--default", default=None, help="also write paired.md: every variant's paired difference to "
                   "this variant (95%% bootstrap intervals over records)")
    args = p.parse_args(argv)
    names = [parse_variant(v)[0] for v in args.variant]  # every bad variant fails before anything runs
    if args.default is not None and args.default not in names:
        raise SystemExit(f"--default {args.default!r} names no --variant; use one of {', '.join(names)}.")
    try:
        records = corpus_records(args.data, args.split, args.n, args.domains.split(","), args.frames)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for variant in args.variant:
        summaries[parse_variant(variant)[0]] = run_variant(variant, records, args.out, args.model, args.steps,
                                                           args.true_cfg_scale, args.captions)
        print(markdown({k: summaries[k] for k in list(summaries)[-1:]}).splitlines()[-1], flush=True)
    table = markdown(summaries)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    if args.default is not None:
        paired = paired_table({n: load_report(args.out / n / "report.json") for n in names}, args.default)
        (args.out / "paired.md").write_text(paired)
        print(paired)


if __name__ == "__main__":
    main()
