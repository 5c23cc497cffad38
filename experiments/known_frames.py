"""Known-frames measurement: ReCraft, continuation and interpolation against the true processes.

    python -m experiments.known_frames --out runs/eval-known --n 10 \\
        --variant new=concat:src/procseq/embedded/procseq-tiny/known_frames --variant inplace=inplace:none \\
        --variant text=text

Tasks (every record of test-seen and test-compositional, the first `n` per domain):

- ``recraft``: the true last frame known, the earlier frames generated (prompt: the domain phrase);
- ``continue``: the true first 3 frames of a 9-frame sequence known, frames 3..8 generated (prompt: the
  record's prompt); 9-frame domains only;
- ``interpolate``: a 3-frame window cut from the truth (start from the record index), its two ends known,
  the middle generated (prompt: the record's prompt).

Scores cover the **generated** frames only: step accuracy (the frame is nearer its true step than any other,
different, true step of the whole sequence), PSNR and SSIM to the true frame, and for ``recraft`` and
``continue`` the attribute accuracy of the generated frames whose attributes are already final (read
by the domain's checker, compared with the spec). Variants: ``MODE:LORA`` (``none`` for no LoRA),
``text`` (text-only generation of the same spec, the same frames scored), and for interpolation the
``copy-left`` and ``average`` baselines. Sampling: 20 Euler steps, no true CFG, seed = record index.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from experiments.common import SPLITS, add_common_arguments
from procseq.data.dataset import load_truth
from procseq.eval.metrics import _step_features, domain_of, psnr, ssim, to_array, values_equal
TASKS = ("recraft", "continue", "interpolate")
CONTINUE_KNOWN = 3


def window_start(index: int, num_frames: int) -> int:
    """The interpolation window's first frame for record `index` (deterministic)."""
    return index % (num_frames - 2)


def score_frames(generated: dict[int, np.ndarray], truth: list[np.ndarray], spec: Any,
                 attributes: bool) -> dict[str, float]:
    """Step accuracy, PSNR, SSIM (and attribute hits/checks) of `generated` ``{true step: frame}``."""
    dom = domain_of(spec)
    feats = [_step_features(t) for t in truth]
    final = dom.expected(spec, len(truth) - 1)
    step, p, s, hits, checks = [], [], [], 0, 0
    for i, g in generated.items():
        d = [float(np.abs(_step_features(g) - f).mean()) for f in feats]
        rivals = [d[j] for j in range(len(truth)) if j != i and not np.array_equal(truth[j], truth[i])]
        step.append(all(d[i] < r for r in rivals))
        p.append(psnr(g, truth[i]))
        s.append(ssim(g, truth[i]))
        if attributes:
            expected = dom.expected(spec, i)
            read = dom.read(g, spec)
            for k, v in expected.items():
                if v is not None and values_equal(v, final.get(k)):
                    checks += 1
                    hits += int(values_equal(read.get(k), v))
    return {"step_acc": float(np.mean(step)), "psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
            "attr_hits": hits, "attr_checks": checks}


def make_variant(spec: str, model: str | None) -> Any:
    """A callable ``(task, record, truth, index) -> {step: frame}`` for a variant spec."""
    from procseq.domain_prompt import domain_prompt
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline
    from procseq.pipelines.text_to_sequence import ProcessPipeline

    if spec in ("copy-left", "average"):
        def baseline(task: str, record: dict[str, Any], truth: list[Image.Image], index: int) -> dict[int, Any]:
            if task != "interpolate":
                return {}
            s = window_start(index, len(truth))
            a, b = (np.asarray(truth[s + k], dtype=np.float32) for k in (0, 2))
            mid = a if spec == "copy-left" else (a + b) / 2
            return {s + 1: mid.round().astype(np.uint8)}
        return baseline

    text_only = spec == "text"
    mode, _, lora = ("concat", "", "none") if text_only else spec.partition(":")
    pipe = load_recraft_pipeline(model, lora=None if lora in ("", "default") or lora == "none" else lora,
                                 use_lora=lora != "none", device="cpu")
    pipe.set_progress_bar_config(disable=True)

    def run(task: str, record: dict[str, Any], truth: list[Image.Image], index: int) -> dict[int, Any]:
        n, g = len(truth), torch.Generator().manual_seed(index)
        common = dict(num_inference_steps=20, true_cfg_scale=1.0, generator=g, domain=record["domain"])
        if task == "recraft":
            prompt, frames, known, targets = domain_prompt(record["domain"]), n, {n - 1: truth[-1]}, range(n - 1)
        elif task == "continue":
            if n != 9:
                return {}
            prompt, frames, targets = record["prompt"], n, range(CONTINUE_KNOWN, n)
            known = {k: truth[k] for k in range(CONTINUE_KNOWN)}
        else:
            s = window_start(index, n)
            prompt, frames, known, targets = record["prompt"], 3, {0: truth[s], 2: truth[s + 2]}, [1]
        out = ProcessPipeline.__call__(pipe, prompt, frames=frames, known=None if text_only else known,
                                       known_mode=None if text_only else mode, **common).frames[0]
        offset = window_start(index, n) if task == "interpolate" else 0
        return {offset + t: np.asarray(out[t]) for t in targets}

    return run


def evaluate(variants: dict[str, str], records: list[dict[str, Any]], tasks: list[str], model: str | None
             ) -> dict[str, Any]:
    """Scores per task, variant and split (overall and per domain)."""
    from procseq.eval.scorer import spec_from_dict

    results: dict[str, Any] = {}
    for name, spec in variants.items():
        fn = make_variant(spec, model)
        for task in tasks:
            start = time.perf_counter()
            rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
            for index, record in enumerate(records):
                truth_img = load_truth(record)
                gen = fn(task, record, truth_img, index)
                if not gen:
                    continue
                spec_obj = spec_from_dict(record["spec"])
                truth = [to_array(t, int(spec_obj.frame_size)) for t in truth_img]
                gen = {k: to_array(v if isinstance(v, Image.Image) else Image.fromarray(v), int(spec_obj.frame_size))
                       for k, v in gen.items()}
                row = score_frames(gen, truth, spec_obj, attributes=task != "interpolate")
                rows[record["spec"]["split"]].append({**row, "domain": record["domain"]})
            if not any(rows.values()):
                continue
            results.setdefault(task, {})[name] = {s: summarise(r) for s, r in rows.items()}
            results[task][name]["seconds"] = time.perf_counter() - start
            print(f"{task} {name}: " + json.dumps({s: results[task][name][s]["overall"] for s in SPLITS}), flush=True)
    return results


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean step/PSNR/SSIM and pooled attribute accuracy, overall and per domain."""
    def agg(items: list[dict[str, Any]]) -> dict[str, float]:
        checks = sum(r["attr_checks"] for r in items)
        return {"n": len(items), **{m: float(np.mean([r[m] for r in items])) for m in ("step_acc", "psnr", "ssim")},
                "attr_acc": sum(r["attr_hits"] for r in items) / checks if checks else float("nan")}

    domains = sorted({r["domain"] for r in rows})
    return {"overall": agg(rows) if rows else {}, "domains": {d: agg([r for r in rows if r["domain"] == d])
                                                               for d in domains}}


def markdown(results: dict[str, Any]) -> str:
    """One table per task: variant x split."""
    out = []
    for task, by_variant in results.items():
        out += [f"**{task}**", "", "| variant | split | n | step acc | PSNR (dB) | SSIM | attribute acc |",
                "|---|---|---|---|---|---|---|"]
        for name, res in by_variant.items():
            for split in SPLITS:
                o = res[split]["overall"]
                if o:
                    out.append(f"| {name} | {split} | {o['n']} | {o['step_acc']:.3f} | {o['psnr']:.2f} | "
                               f"{o['ssim']:.3f} | {o['attr_acc']:.3f} |")
        out.append("")
    return "\n".join(out)


def example_figure(out: Path, data: Path, model: str | None, domains: list[str], index: int = 0) -> Path:
    """README figure: per domain, ReCraft (last frame given) and continuation (first 3 given), then the truth."""
    from procseq.data.dataset import draw_montage, load_split
    from procseq.pipelines.image_to_sequence import load_recraft_pipeline

    pipe = load_recraft_pipeline(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    records = load_split(data, "test-compositional")
    rows = []
    for d in domains:
        rec = [r for r in records if r["domain"] == d][index]
        truth = load_truth(rec)
        g = torch.Generator().manual_seed(0)
        recraft = pipe(truth[-1], domain=d, frames=len(truth), generator=g).frames[0]
        rows.append((f"{d} recraft", recraft))
        if len(truth) == 9:
            cont = pipe.continue_sequence(truth[:CONTINUE_KNOWN], rec["prompt"], domain=d, frames=9, true_cfg_scale=1.0,
                                          generator=torch.Generator().manual_seed(0)).frames[0]
            rows.append(("  continue", cont))
        rows.append(("  truth", truth))
    return draw_montage(rows, out)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    from procseq.data.dataset import load_split
    from procseq.eval.runner import per_domain

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--variant", action="append", default=[],
                   help="NAME=SPEC; SPEC: MODE:LORA (MODE concat|inplace, LORA a folder, 'default' or 'none') | "
                        "text | copy-left | average")
    p.add_argument("--example", default=None, type=Path,
                   help="only draw the README figure (e.g. docs/known_frames.png) with the model's own LoRA, then stop")
    args = p.parse_args(argv)
    domains = args.domains.split(",")
    if args.example is not None:
        print(example_figure(args.example, args.data, args.model, domains))
        return
    records = [r for split in SPLITS for r in per_domain(load_split(args.data, split), args.n, domains)]
    variants = dict(v.partition("=")[::2] for v in args.variant)
    results = evaluate(variants, records, args.tasks.split(","), args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "known_frames.json").write_text(json.dumps({"n_per_domain": args.n, "variants": variants,
                                                            "results": results}, indent=2) + "\n")
    text = markdown(results)
    (args.out / "known_frames.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
