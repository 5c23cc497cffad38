"""ReCraft (MakeAnything's image-to-process): the true last frame in, the generated process scored against the
true process; variants of the known-frames LoRA and the cached-vs-uncached condition branch.

    python -m experiments.last_frame --out runs/eval-recraft --n 10 \\
        --variant concat=concat:src/procseq/embedded/procseq-tiny/known_frames \\
        --variant inplace=inplace:runs/recraft-inplace/model --variant text=text
    python -m experiments.last_frame --out runs/eval-recraft --example docs/recraft.png   # the README figure

For every record of test-seen and test-compositional (the first `n` per domain), the record's true
final frame is given to ReCraft and the N-1 earlier frames are generated. Metrics (over the
**generated** frames only; the last frame is the input and would be trivially perfect):

- **step acc**: generated frame i is closer to true frame i than to every other (different) true frame;
- **PSNR / SSIM**: fidelity of generated frame i to true frame i;
- **attribute agreement** (:func:`procseq.eval.metrics.attribute_agreement`): for every generated frame i and
  every attribute the domain's checker expects already in its final state at step i (drawn, with its final
  value), whether the value read from the generated frame equals the value read from the input picture.

A ``text`` variant runs the plain text-to-sequence model on the record's full prompt (a reference
with more information than ReCraft gets). The cached-vs-uncached speed of the condition branch is
measured in the same run (`--speed-runs`, alternating, median of the denoising loop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from experiments.common import SPLITS, add_common_arguments
from procseq.data.dataset import load_truth
from procseq.eval.metrics import attribute_agreement
from procseq.eval.runner import evaluate_records, per_domain, record_id
from procseq.outputs import write_json_atomic, write_text_atomic
from procseq.sequence import Sequence


def summarise(folders: list[Path]) -> dict[str, Any]:
    """Generated-frame metrics of sequence folders (per domain and overall)."""
    from procseq.eval.metrics import score_sequence
    from procseq.eval.scorer import spec_of

    rows: dict[str, list[dict[str, float]]] = {}
    for folder in folders:
        seq = Sequence.load(folder)
        spec = spec_of(seq, folder)
        score = score_sequence(seq.frames, spec)
        gen = score.frames[:-1]
        hits, checks = attribute_agreement(seq.frames, spec)
        rows.setdefault(spec.domain, []).append({
            "step_acc": float(np.mean([f.step_correct for f in gen])),
            "psnr": float(np.mean([f.psnr for f in gen])),
            "ssim": float(np.mean([f.similarity for f in gen])),
            "agree_hits": hits, "agree_checks": checks,
        })

    def agg(items: list[dict[str, float]]) -> dict[str, float]:
        checks = sum(r["agree_checks"] for r in items)
        return {"n": len(items), **{m: float(np.mean([r[m] for r in items])) for m in ("step_acc", "psnr", "ssim")},
                "attr_agreement": sum(r["agree_hits"] for r in items) / checks if checks else float("nan")}

    return {"domains": {d: agg(r) for d, r in sorted(rows.items())},
            "overall": agg([r for v in rows.values() for r in v])}


def run_variant(name: str, spec: str, records: list[dict[str, Any]], out: Path, model: str | None,
                steps: int | None) -> dict[str, Any]:
    """Generate and score one variant (``text``, ``none:<mode>`` or ``<mode>:<lora dir>``) on `records`."""
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    if spec == "text":
        from procseq.pipelines.loading import load_pipeline

        pipe = load_pipeline(model, adapters="none", device="cpu")

        def frames_fn(record: Mapping[str, Any], seed: int) -> Any:
            g = torch.Generator("cpu").manual_seed(seed)
            return pipe(record["prompt"], domain=record["domain"], frames=int(record["num_frames"]),
                        num_inference_steps=steps, generator=g,
                        true_cfg_scale=1.0).frames[0]  # ReCraft's sampler: no true CFG
    else:
        mode, _, lora = spec.partition(":")
        use_lora = mode != "none"
        if not use_lora:
            mode, lora = lora, ""
        pipe = load_recraft_pipeline(model, lora=lora or None, use_lora=use_lora, device="cpu")

        def frames_fn(record: Mapping[str, Any], seed: int) -> Any:
            g = torch.Generator("cpu").manual_seed(seed)
            with Image.open(record["frame_paths"][-1]) as im:
                final = im.convert("RGB")
            return pipe(final, domain=record["domain"], frames=int(record["num_frames"]), known_mode=mode,
                        num_inference_steps=steps, generator=g).frames[0]

    pipe.set_progress_bar_config(disable=True)
    result: dict[str, Any] = {}
    for split in SPLITS:
        recs = [r for r in records if r["spec"]["split"] == split]
        folder = out / name / split
        start = time.perf_counter()
        evaluate_records(frames_fn, recs, folder, name=f"{name} {split}", progress=False, resume=True,
                         meta={"variant": spec, "split": split})
        ids = [record_id(i, r) for i, r in enumerate(recs)]
        result[split] = summarise([folder / "sequences" / i for i in ids])
        result[split]["seconds"] = time.perf_counter() - start
    return result


def cache_speedup(model: str | None, lora: str | None, image: Image.Image, domain: str, frames: int,
                  runs: int, steps: int | None) -> dict[str, Any]:
    """Median wall time of generation with the condition branch cached vs recomputed every step."""
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    pipe = load_recraft_pipeline(model, lora=lora, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    times: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, list[np.ndarray]] = {}
    for r in range(runs + 1):  # run 0 warms up
        for cached in (True, False):
            start = time.perf_counter()
            out = pipe(image, domain=domain, frames=frames, known_mode="concat", cache_condition=cached,
                       num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
            if r:
                times[cached].append(time.perf_counter() - start)
            outputs[cached] = [np.asarray(f) for f in out.frames[0]]
    same = all(np.array_equal(a, b) for a, b in zip(outputs[True], outputs[False]))
    cached_s, uncached_s = statistics.median(times[True]), statistics.median(times[False])
    return {"runs": runs, "frames": frames, "steps": steps or pipe.defaults.num_inference_steps,
            "cached_s": cached_s, "uncached_s": uncached_s, "speedup": uncached_s / cached_s,
            "identical_output": same, "threads": torch.get_num_threads()}


def markdown(results: dict[str, Any]) -> str:
    """The BENCHMARKS table: one row per variant and split."""
    lines = ["| variant | split | n | step acc | PSNR (dB) | SSIM | attribute agreement |",
             "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for split in SPLITS:
            o = res[split]["overall"]
            lines.append(f"| {name} | {split} | {o['n']} | {o['step_acc']:.3f} | {o['psnr']:.2f} | {o['ssim']:.3f} | "
                         f"{o['attr_agreement']:.3f} |")
    return "\n".join(lines)


def domain_markdown(results: dict[str, Any], split: str) -> str:
    """Step accuracy / attribute agreement per domain for `split`."""
    names = list(results)
    domains = sorted(results[names[0]][split]["domains"])
    lines = ["| domain | " + " | ".join(f"{n} step / agree" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for d in domains:
        cells = []
        for n in names:
            o = results[n][split]["domains"][d]
            cells.append(f"{o['step_acc']:.2f} / {o['attr_agreement']:.2f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def example_figure(out: Path, data: Path, model: str | None, lora: str | None, split: str, index: int,
                   seed: int, domains: list[str]) -> Path:
    """One row pair per domain: ReCraft from the true final frame (input = last frame), then the truth."""
    from procseq.data.dataset import draw_montage, load_split
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    pipe = load_recraft_pipeline(model, lora=lora, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    records = load_split(data, split)
    rows = []
    for d in domains:
        rec = [r for r in records if r["domain"] == d][index]
        truth = load_truth(rec)
        out_seq = pipe(truth[-1], domain=d, frames=len(truth), generator=torch.Generator().manual_seed(seed))
        rows += [(f"{d} recraft", out_seq.frames[0]), ("  truth", truth)]
    return draw_montage(rows, out)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    from procseq.data.dataset import load_split

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--steps", default=None, type=int)
    p.add_argument("--variant", action="append", default=[],
                   help="NAME=SPEC; SPEC: text | none:concat | none:inplace | concat:LORA_DIR | inplace:LORA_DIR")
    p.add_argument("--speed-runs", default=5, type=int, help="timed runs per path for the cache speed-up (0: skip)")
    p.add_argument("--example", default=None, type=Path,
                   help="only draw the README figure (e.g. docs/recraft.png) with the model's own LoRA, then stop")
    p.add_argument("--example-index", default=0, type=int, help="which test-compositional record per domain")
    args = p.parse_args(argv)
    domains = args.domains.split(",")
    if args.example is not None:
        print(example_figure(args.example, args.data, args.model, None, "test-compositional", args.example_index,
                             0, domains))
        return
    records = [r for split in SPLITS for r in per_domain(load_split(args.data, split), args.n, domains)]
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for item in args.variant:
        name, _, spec = item.partition("=")
        results[name] = run_variant(name, spec, records, args.out, args.model, args.steps)
        print(f"{name}: " + json.dumps({s: results[name][s]["overall"] for s in SPLITS}), flush=True)
    report: dict[str, Any] = {"n_per_domain": args.n, "domains": domains, "variants": dict(
        v.partition("=")[::2] for v in args.variant), "results": results}
    if args.speed_runs:
        rec = records[0]
        with Image.open(rec["frame_paths"][-1]) as im:
            image = im.convert("RGB")
        concat_lora = next((s.partition(":")[2] for s in report["variants"].values() if s.startswith("concat:")), None)
        report["cache_speedup"] = cache_speedup(args.model, concat_lora, image, rec["domain"], int(rec["num_frames"]),
                                                args.speed_runs, args.steps)
        print("cache speed-up: " + json.dumps(report["cache_speedup"]), flush=True)
    write_json_atomic(args.out / "recraft.json", report)  # the file name of earlier runs
    text = markdown(results) if results else ""
    if results:
        text += "\n\n" + "\n\n".join(f"{s}:\n\n" + domain_markdown(results, s) for s in SPLITS)
    write_text_atomic(args.out / "recraft.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
