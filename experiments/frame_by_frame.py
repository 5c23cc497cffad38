"""Frame-by-frame measurement (issue 14): modes compared, Loom's ablation, time per frame, the planner.

    python -m experiments.frame_by_frame compare  --out runs/eval-fbf/compare --n 3 --lengths 4,9,12,16
    python -m experiments.frame_by_frame ablation --out runs/eval-fbf/ablation --n 2
    python -m experiments.frame_by_frame ablation --out runs/eval-fbf/v3 --n 3 \
        --data ~/.cache/procseq/corpus-v2 --variants "default (sparse history),no step embedding"
    python -m experiments.frame_by_frame timing   --out runs/eval-fbf/timing --lengths 4,8,16,32
    python -m experiments.frame_by_frame planner  --out runs/eval-fbf/planner --n 20
    python -m experiments.frame_by_frame example  --out docs/frame_by_frame.png   # the README figure

Specs are drawn fresh from the corpus generators (``split``, ``test-compositional`` by default), the first `n`
seeds per domain and length the domain renders; every mode gets the same spec, the same seed and the spec's
own captions as its plan. Scores are :func:`procseq.eval.metrics.score_sequence` (step accuracy, attribute
accuracy of the final frame, cross-step consistency) against the rendered truth; time is the wall time of one
generation (encode + denoise + decode) on this machine.

The planner check writes one instruction per spec (``"show how to make <prompt> in <n> steps"``, and without
the step count) and counts the plans whose domain, step count and attributes (each text or count attribute of
the spec that the instruction names) match.

``ablation --data CORPUS`` runs the ablation on the corpus's records instead (the first `n` per domain of
``--split``, any length) with the call and seeds of ``procseq eval --mode frame-by-frame`` (the planner's
captions; ``--captions truth``: the records' own), keeps every sequence and its scores under ``OUT/<variant>/``,
and tables each variant's paired difference to the first one (95 % bootstrap intervals over records,
:func:`experiments.ablation.paired_table`). ``--variants`` picks :data:`ABLATIONS` by name (comma-separated).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from experiments.ablation import corpus_records, eval_call, paired_table
from experiments.common import BASE_DOMAINS
from procseq.eval.metrics import aggregate, score_sequence
from procseq.outputs import write_json_atomic, write_text_atomic
from procseq.layouts.frame_by_frame import FrameByFrameOptions
from procseq.planning import Plan, plan_instruction

ABLATIONS: dict[str, FrameByFrameOptions] = {
    "default (sparse history)": FrameByFrameOptions(),
    "no step embedding": FrameByFrameOptions(step_embedding=False),
    "plan text only": FrameByFrameOptions(step_caption=False),
    "no plan text": FrameByFrameOptions(plan=False),
    "no history": FrameByFrameOptions(history="none"),
    "previous frame only": FrameByFrameOptions(history="previous"),
    "all earlier frames": FrameByFrameOptions(history="all"),
    "K=1": FrameByFrameOptions(k=1),
    "K=4": FrameByFrameOptions(k=4),
    "no LoRA, no embedding": FrameByFrameOptions(lora=False, step_embedding=False),
}


def draw_specs(domains: list[str], lengths: list[int], n: int, split: str) -> list[Any]:
    """The first `n` specs per domain and length (lengths a domain cannot render are skipped), fixed seeds."""
    from procseq.data.synthetic.base import REGISTRY, generate

    specs = []
    for domain in domains:
        supported = getattr(REGISTRY[domain], "lengths", [REGISTRY[domain].num_frames])
        for length in lengths:
            if length not in supported:
                continue
            for seed in range(n):
                kwargs = {} if length == REGISTRY[domain].num_frames else {"num_frames": length}
                specs.append(generate(domain, 1000 + seed, 32, split, **kwargs)[0])
    return specs


def run_mode(pipe: Any, spec: Any, mode: str, seed: int, options: FrameByFrameOptions | None = None) -> tuple[list, float]:
    """Generate `spec`'s sequence in `mode` (its prompt, its own captions as the plan); frames and seconds."""
    plan = Plan(spec.prompt, spec.domain, list(spec.captions))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    if mode == "frame-by-frame":
        out = pipe(plan=plan, generator=gen, mode="frame-by-frame", frame_by_frame=options)
    else:
        out = pipe(plan=plan, generator=gen, mode=mode)
    return out.frames[0], time.perf_counter() - start


def score_runs(pipe: Any, specs: list[Any], variants: dict[str, tuple[str, FrameByFrameOptions | None]]
               ) -> dict[str, Any]:
    """Every variant ``name -> (mode, options)`` on every spec: per length, the aggregated scores and times."""
    results: dict[str, Any] = {}
    for name, (mode, options) in variants.items():
        by_length: dict[int, list] = {}
        times: dict[int, list[float]] = {}
        for i, spec in enumerate(specs):
            n = int(spec.num_frames)
            if mode == "grid" and n > pipe.defaults.max_frames:
                continue  # the grid stops at the model's max_frames
            frames, seconds = run_mode(pipe, spec, mode, i, options)
            by_length.setdefault(n, []).append(score_sequence(frames, spec))
            times.setdefault(n, []).append(seconds)
        results[name] = {str(n): {**aggregate(s)["overall"], "seconds_median": statistics.median(times[n])}
                         for n, s in sorted(by_length.items())}
    return results


def corpus_ablation(pipe: Any, records: list[Any], out: Path, variants: dict[str, FrameByFrameOptions],
                    captions: str = "plan") -> str:
    """Every variant on the corpus `records` as ``procseq eval --mode frame-by-frame`` samples them; each variant's
    sequences and report go to ``out/<slug>/``; returns the paired table against the first variant."""
    from procseq.eval.runner import evaluate_records

    reports = {}
    for name, options in variants.items():
        slug = "-".join("".join(c if c.isalnum() else " " for c in name).split())
        reports[name] = evaluate_records(
            lambda record, seed, o=options: eval_call(pipe, record, seed, captions, mode="frame-by-frame",
                                                      frame_by_frame=o),
            records, out / slug, progress=False, name=name, meta={"variant": name, "options": options.to_dict()})
        overall = reports[name].summary["overall"]
        print(f"{name}: step acc {overall['step_acc']:.3f}, attribute acc {overall['attribute_acc']:.3f}", flush=True)
    return paired_table(reports, next(iter(variants)))


def table(results: dict[str, Any], title: str) -> str:
    """A Markdown table: one row per variant and length."""
    rows = [f"### {title}", "", "| variant | steps | n | step acc | attribute acc | consistency | s / sequence |",
            "|---|---|---|---|---|---|---|"]

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}"

    for name, per_length in results.items():
        for n, r in per_length.items():
            rows.append(f"| {name} | {n} | {r['n']} | {f(r['step_acc'])} | {f(r['attribute_acc'])} | "
                        f"{f(r['consistency'])} | {r['seconds_median']:.2f} |")
    return "\n".join(rows) + "\n"


def timing(pipe: Any, lengths: list[int], prompt: str = "a LEGO tower of eight bricks, blue and red rows, on a "
           "gray baseplate", domain: str = "lego") -> dict[str, Any]:
    """Seconds per frame for sequences of `lengths` frames (frame-by-frame, K = 2): every frame's time."""
    out = {}
    for n in lengths:
        plan = Plan(prompt, domain, [f"step {i + 1}" for i in range(n)])
        res = pipe(plan=plan, generator=torch.Generator().manual_seed(0), mode="frame-by-frame")
        frames, cpu = res.metadata[0]["timings_s"]["frames"], res.metadata[0]["timings_s"]["frames_cpu"]
        out[str(n)] = {"median_s": statistics.median(frames), "first_half_s": statistics.median(frames[: n // 2]),
                       "second_half_s": statistics.median(frames[n // 2:]), "frames_s": frames,
                       "cpu_median_s": statistics.median(cpu), "cpu_first_half_s": statistics.median(cpu[: n // 2]),
                       "cpu_second_half_s": statistics.median(cpu[n // 2:]), "frames_cpu_s": cpu}
    return out


def planner_accuracy(specs: list[Any]) -> dict[str, Any]:
    """Share of plans whose domain, step count and named attributes match the spec (offline corpus planner)."""
    rows = {"with count": [], "without count": []}
    for spec in specs:
        for kind in rows:
            text = f"show how to make {spec.prompt}" + (f" in {spec.num_frames} steps" if kind == "with count" else "")
            plan = plan_instruction(text)
            attrs = plan.meta.get("attributes", {})
            named = {k: v for k, v in spec.attributes.items() if isinstance(v, (str, int)) and not isinstance(v, bool)
                     and str(v).lower() in spec.prompt.lower()}
            hits = [attrs.get(k) == v for k, v in named.items()]
            rows[kind].append({"domain": plan.domain == spec.domain, "steps": plan.num_steps == spec.num_frames,
                               "attributes": sum(hits) / len(hits) if hits else None,
                               "all_attributes": all(hits) if hits else None})
    out = {}
    for kind, rs in rows.items():
        attr = [r["attributes"] for r in rs if r["attributes"] is not None]
        full = [r["all_attributes"] for r in rs if r["all_attributes"] is not None]
        out[kind] = {"n": len(rs), "domain": sum(r["domain"] for r in rs) / len(rs),
                     "steps": sum(r["steps"] for r in rs) / len(rs),
                     "attributes": sum(attr) / len(attr) if attr else None,
                     "all_attributes": sum(full) / len(full) if full else None}
    return out


EXAMPLES = (("a LEGO tower of eight bricks, blue and red rows, on a gray baseplate", "lego", 12),
            ("pixel art of a red house on a black background", "pixel_art", 16),
            ("a painting of a blue circle in the center under a day sky above sand, with a sun", "painting", 9))


def example_figure(pipe: Any, out: Path, seed: int = 0, scale: int = 2) -> Path:
    """One row per :data:`EXAMPLES` prompt: its frame-by-frame sequence (corpus plan), left to right."""
    from PIL import Image

    from procseq.layout import frames_to_grid

    rows = [frames_to_grid(pipe(p, domain=d, frames=n, mode="frame-by-frame",
                                generator=torch.Generator().manual_seed(seed)).frames[0], rows=1, cols=n)
            for p, d, n in EXAMPLES]
    image = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        image.paste(r, (0, y))
        y += r.height
    out.parent.mkdir(parents=True, exist_ok=True)
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m experiments.frame_by_frame", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["compare", "ablation", "timing", "planner", "example"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=None, help="Flux folder (default: procseq-tiny)")
    p.add_argument("--n", default=3, type=int, help="specs per domain and length")
    p.add_argument("--lengths", default="9", help="comma-separated step counts")
    p.add_argument("--domains", default=",".join(BASE_DOMAINS))
    p.add_argument("--split", default="test-compositional")
    p.add_argument("--data", default=None, type=Path, help="ablation on this corpus's records (as procseq eval)")
    p.add_argument("--captions", choices=["plan", "truth"], default="plan", help="with --data: the planner's or "
                   "the records' own captions")
    p.add_argument("--variants", default=None, help="ablation: comma-separated ABLATIONS names (default: all)")
    args = p.parse_args(argv)
    unknown = [v for v in (args.variants.split(",") if args.variants else []) if v not in ABLATIONS]
    if unknown:
        raise SystemExit(f"Unknown variants {unknown}; use names of: {', '.join(ABLATIONS)}.")
    lengths = [int(x) for x in args.lengths.split(",")]
    domains = args.domains.split(",")
    if args.what == "example":
        from procseq.pipelines.loading import load_pipeline

        pipe = load_pipeline(args.model, device="cpu")
        pipe.set_progress_bar_config(disable=True)
        print(example_figure(pipe, args.out))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "planner":
        results: dict[str, Any] = planner_accuracy(draw_specs(domains, lengths, args.n, args.split))
        md = "| instruction | n | domain | steps | attributes (mean) | all attributes |\n|---|---|---|---|---|---|\n" + \
            "".join(f"| {k} | {r['n']} | {r['domain']:.3f} | {r['steps']:.3f} | {r['attributes']:.3f} | "
                    f"{r['all_attributes']:.3f} |\n" for k, r in results.items())
    else:
        from procseq.pipelines.loading import load_pipeline

        pipe = load_pipeline(args.model, device="cpu")
        pipe.set_progress_bar_config(disable=True)
        if args.what == "timing":
            results = timing(pipe, lengths)
            md = ("| frames | CPU s / frame (median) | first half | second half | wall s / frame (median) |\n"
                  "|---|---|---|---|---|\n" + "".join(
                      f"| {n} | {r['cpu_median_s']:.3f} | {r['cpu_first_half_s']:.3f} | {r['cpu_second_half_s']:.3f} | "
                      f"{r['median_s']:.3f} |\n" for n, r in results.items()))
        else:
            chosen = {k: ABLATIONS[k] for k in (args.variants.split(",") if args.variants else ABLATIONS)}
            if args.what == "ablation" and args.data is not None:
                try:
                    records = corpus_records(args.data, args.split, args.n, domains)
                except ValueError as e:
                    raise SystemExit(str(e)) from None
                results = {"variants": {k: v.to_dict() for k, v in chosen.items()}}
                md = corpus_ablation(pipe, records, args.out, chosen, args.captions)
            else:
                specs = draw_specs(domains, lengths, args.n, args.split)
                variants = ({"grid": ("grid", None), "regional": ("regional", None),
                             "frame-by-frame": ("frame-by-frame", None)} if args.what == "compare"
                            else {k: ("frame-by-frame", v) for k, v in chosen.items()})
                results = score_runs(pipe, specs, variants)
                md = table(results, args.what)
    write_json_atomic(args.out / "results.json", {"args": {k: str(v) for k, v in vars(args).items()}, **results})
    write_text_atomic(args.out / "results.md", md)
    print(md)


if __name__ == "__main__":
    main()


__all__ = ["ABLATIONS", "EXAMPLES", "corpus_ablation", "draw_specs", "example_figure", "planner_accuracy", "run_mode", "score_runs", "table", "timing"]
