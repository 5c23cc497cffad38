"""Adaptive steps on constructed cases from the corpus ground truth (issue 15).

    python -m experiments.adaptive --data data_cache/corpus --out runs/eval-adaptive --n 20

Every record (the first `n` per base domain of test-seen) gives three cases, built from its true frames:

- ``drop``: one interior frame (and its caption) removed; the right action is an insertion in the gap;
- ``duplicate``: one frame (and its caption) repeated; the right action is a deletion at that pair;
- ``clean``: the true sequence; every action is a false positive.

**Detection** (one round, every pair at once): precision and recall of insertions and deletions at the
right pair, for the full method and ProcessMaker's ablation (without the global, local or semantic
term), over a grid of ``k``. **Repair** (the full method, up to `rounds` rounds, insertions generated
by the model through the known-frames mechanism): step accuracy (:func:`procseq.eval.metrics.score_sequence`)
before and after. The scorer needs the spec's frame count, so a sequence of another length is first
resampled to it (:func:`procseq.eval.baselines.resample`, first and last kept, evenly spaced), exactly as a
fixed-count pipeline would be judged; the fraction with the right count is reported beside it.
**Generated** (the first `n-generated` records per domain): the model's own sequences (its default sampling,
seed = record index) scored as generated and after adaptive steps, full and ablated (same rule for the count).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from experiments.common import DOMAINS
from procseq.pipelines.adaptive import AdaptiveConfig, adapt_frames

CASES = ("drop", "duplicate", "clean")
ABLATIONS: dict[str, tuple[float, float]] = {
    "full": (0.4, 0.4), "no global": (0.0, 0.4 / 0.6), "no local": (0.4 / 0.6, 0.0), "no semantic": (0.5, 0.5),
}
"""Name -> (alpha, beta); an ablation sets its term's weight to 0 and rescales the other two to sum to 1."""


def construct(frames: list[Image.Image], captions: list[str], case: str, index: int
              ) -> tuple[list[Image.Image], list[str], int | None]:
    """The corrupted sequence of `case` and the pair index where the right action is (None for clean)."""
    n = len(frames)
    if case == "clean":
        return list(frames), list(captions), None
    k = 1 + index % (n - 2)  # an interior frame, deterministic per record
    if case == "drop":
        return frames[:k] + frames[k + 1:], captions[:k] + captions[k + 1:], k - 1
    if case == "duplicate":
        return frames[:k + 1] + [frames[k].copy()] + frames[k + 1:], captions[:k + 1] + [captions[k]] + captions[k + 1:], k
    raise ValueError(f"Unknown case {case!r}; use one of {', '.join(CASES)}.")


def _copy_left(left: Image.Image, _right: Image.Image, _captions: list[str], _seed: int) -> Image.Image:
    return left.copy()


def detection(cases: list[dict[str, Any]], extractor: Any, config: AdaptiveConfig) -> dict[str, Any]:
    """Precision and recall of one round's insertions and deletions at the right pair."""
    hits = {"insert": 0, "delete": 0}
    made = {"insert": 0, "delete": 0}
    wanted = {"insert": sum(c["case"] == "drop" for c in cases), "delete": sum(c["case"] == "duplicate" for c in cases)}
    clean_touched = 0
    for c in cases:
        res = adapt_frames(c["frames"], c["captions"], extractor, _copy_left, config)
        actions = res.record["rounds"][0]["actions"]
        for a in actions:
            op, pair = a["op"], a["between"][0] if a["op"] == "insert" else a["pair"][0]
            made[op] += 1
            hits[op] += int(pair == c["target"] and c["case"] == ("drop" if op == "insert" else "duplicate"))
        clean_touched += int(c["case"] == "clean" and bool(actions))
    out: dict[str, Any] = {}
    for op in ("insert", "delete"):
        out[op] = {"precision": hits[op] / made[op] if made[op] else float("nan"),
                   "recall": hits[op] / wanted[op] if wanted[op] else float("nan"), "made": made[op],
                   "correct": hits[op], "cases": wanted[op]}
    out["clean_changed"] = clean_touched / max(1, sum(c["case"] == "clean" for c in cases))
    return out


def interpolator(kind: str, pipe: Any, prompt: str, domain: str, steps: int) -> Any:
    """``model`` (known frames 0 and 2 of a 3-frame generation, no true CFG) or ``average`` (pixel blend)."""
    from procseq.pipelines.adaptive import PipelineInterpolator, average_interpolator

    if kind == "average":
        return average_interpolator
    return PipelineInterpolator(pipe, prompt, domain, num_inference_steps=steps, true_cfg_scale=1.0)


def repair(cases: list[dict[str, Any]], extractor: Any, pipe: Any, config: AdaptiveConfig, steps: int,
           kind: str = "model") -> dict[str, Any]:
    """Step accuracy before and after adaptive steps (insertions by `kind`), per case kind."""
    from procseq.eval.baselines import resample
    from procseq.eval.metrics import score_sequence
    from procseq.eval.scorer import spec_from_dict

    rows: dict[str, list[dict[str, float]]] = {c: [] for c in CASES}
    for c in cases:
        spec = spec_from_dict(c["spec"])
        n = int(spec.num_frames)
        interp = interpolator(kind, pipe, c["prompt"], c["domain"], steps)
        res = adapt_frames(c["frames"], c["captions"], extractor, interp, config, seed=c["index"])
        before = score_sequence(resample(c["frames"], n), spec).step_acc
        after = score_sequence(resample(res.frames, n), spec).step_acc
        rows[c["case"]].append({"before": before, "after": after, "count_right_before": float(len(c["frames"]) == n),
                                "count_right_after": float(len(res.frames) == n),
                                "inserted": res.record["inserted"], "deleted": res.record["deleted"]})
    return {case: {"n": len(r), **{k: float(np.mean([x[k] for x in r])) for k in r[0]}} if r else {"n": 0}
            for case, r in rows.items()}


def generated(records: list[dict[str, Any]], pipe: Any, extractor: Any, config: AdaptiveConfig, steps: int,
              kind: str = "model") -> dict[str, Any]:
    """Generated sequences (the record's prompt, seed = record index, the model's defaults) scored as generated
    and after adaptive steps, for the full method and each ablation (same `config` otherwise)."""
    import torch

    from procseq.eval.baselines import resample
    from procseq.eval.metrics import score_sequence
    from procseq.eval.scorer import spec_from_dict

    rows: dict[str, list[dict[str, float]]] = {"generated": [], **{name: [] for name in ABLATIONS}}
    for index, record in enumerate(records):
        spec = spec_from_dict(record["spec"])
        n = int(spec.num_frames)
        out = pipe(record["prompt"], domain=record["domain"], frames=n, generator=torch.Generator().manual_seed(index))
        frames, captions = out.frames[0], out.captions[0]
        base = score_sequence(frames, spec)
        rows["generated"].append({"step_acc": base.step_acc, "consistency": _nan(base.consistency), "frames": n,
                                  "inserted": 0, "deleted": 0})
        interp = interpolator(kind, pipe, record["prompt"], record["domain"], steps)
        for name, (alpha, beta) in ABLATIONS.items():
            res = adapt_frames(frames, captions, extractor, interp, replace(config, alpha=alpha, beta=beta), index)
            sc = score_sequence(resample(res.frames, n), spec)
            rows[name].append({"step_acc": sc.step_acc, "consistency": _nan(sc.consistency),
                               "frames": len(res.frames), "inserted": res.record["inserted"],
                               "deleted": res.record["deleted"]})
        print(f"generated {index + 1}/{len(records)}", flush=True)
    return {name: {"n": len(r), **{k: float(np.nanmean([x[k] for x in r])) for k in r[0]}}
            for name, r in rows.items() if r}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def load_cases(data: Path, split: str, n: int, domains: list[str]) -> list[dict[str, Any]]:
    """The constructed cases of the first `n` records per domain."""
    from procseq.data.dataset import load_split
    from procseq.data.dataset import load_truth
    from procseq.eval.runner import per_domain

    out = []
    for index, record in enumerate(per_domain(load_split(data, split), n, domains)):
        truth = load_truth(record)
        for case in CASES:
            frames, captions, target = construct(truth, list(record["captions"]), case, index)
            out.append({"case": case, "frames": frames, "captions": captions, "target": target, "index": index,
                        "domain": record["domain"], "prompt": record["prompt"], "spec": record["spec"]})
    return out


def markdown(result: dict[str, Any]) -> str:
    """Detection and repair tables."""
    lines = ["| weights | k_add | k_del | insert P | insert R | delete P | delete R | clean changed |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["detection"]:
        d = row["scores"]
        lines.append(f"| {row['weights']} | {row['k_add']} | {row['k_del']} | {d['insert']['precision']:.2f} | "
                     f"{d['insert']['recall']:.2f} | {d['delete']['precision']:.2f} | {d['delete']['recall']:.2f} | "
                     f"{d['clean_changed']:.2f} |")
    if result.get("repair"):
        lines += ["", "| case | n | step acc before | step acc after | right count before | right count after | "
                  "inserted / seq | deleted / seq |", "|---|---|---|---|---|---|---|---|"]
        for case, r in result["repair"].items():
            if r["n"]:
                lines.append(f"| {case} | {r['n']} | {r['before']:.3f} | {r['after']:.3f} | "
                             f"{r['count_right_before']:.2f} | {r['count_right_after']:.2f} | {r['inserted']:.2f} | "
                             f"{r['deleted']:.2f} |")
    if result.get("generated"):
        lines += ["", "| sequences | n | step acc | consistency | frames | inserted / seq | deleted / seq |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in result["generated"].items():
            label = "as generated" if name == "generated" else f"adaptive, {name}"
            lines.append(f"| {label} | {r['n']} | {r['step_acc']:.3f} | {r['consistency']:.3f} | {r['frames']:.2f} | "
                         f"{r['inserted']:.2f} | {r['deleted']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    from procseq.models.features import load_feature_extractor
    from procseq.pipelines.loading import load_pipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", default="data_cache/corpus", type=Path)
    p.add_argument("--split", default="test-seen")
    p.add_argument("--model", default=None)
    p.add_argument("--features", default=None, help="local CLIP/DINOv2 folder (default: the model's own encoders)")
    p.add_argument("--n", default=20, type=int, help="records per domain")
    p.add_argument("--domains", default=DOMAINS)
    p.add_argument("--ks", default="1.0,1.5,2.0", help="k values of the detection grid (k_add = k_del = k)")
    p.add_argument("--k-add", default=2.0, type=float, help="k_add of the repair run and the ablation")
    p.add_argument("--k-del", default=1.5, type=float, help="k_del of the repair run and the ablation")
    p.add_argument("--rounds", default=3, type=int, help="round budget of the repair run")
    p.add_argument("--steps", default=20, type=int, help="denoising steps of an insertion")
    p.add_argument("--parts", default="detection,repair,generated",
                   help="which measurements: detection (constructed cases, one round), repair (constructed cases, "
                        "model insertions), generated (model sequences with and without adaptive steps)")
    p.add_argument("--n-generated", default=10, type=int, help="records per domain of the generated part")
    p.add_argument("--interpolator", default="model", choices=("model", "average"),
                   help="how the repair and generated parts insert a frame")
    args = p.parse_args(argv)
    pipe = load_pipeline(args.model, device="cpu", adapters="none")  # base domains; the condition LoRA loads on use
    pipe.set_progress_bar_config(disable=True)
    extractor = load_feature_extractor(pipe, args.features)
    parts = set(args.parts.split(","))
    cases = load_cases(args.data, args.split, args.n, args.domains.split(",")) if parts & {"detection", "repair"} \
        else []
    start = time.perf_counter()
    result: dict[str, Any] = {"n_per_domain": args.n, "split": args.split, "cases": len(cases), "detection": [],
                              "condition_lora": None, "interpolator": args.interpolator, "k_add": args.k_add,
                              "k_del": args.k_del, "rounds": args.rounds}
    if "detection" in parts:
        grid = [(*ABLATIONS["full"], k, k) for k in map(float, args.ks.split(","))]
        grid += [(a, b, args.k_add, args.k_del) for a, b in ABLATIONS.values()]
        for alpha, beta, k_add, k_del in grid:
            name = next(n for n, w in ABLATIONS.items() if w == (alpha, beta))
            config = AdaptiveConfig(alpha=alpha, beta=beta, k_add=k_add, k_del=k_del, max_rounds=1)
            result["detection"].append({"weights": name, "k_add": k_add, "k_del": k_del,
                                        "scores": detection(cases, extractor, config)})
            print(json.dumps(result["detection"][-1]), flush=True)
    config = AdaptiveConfig(k_add=args.k_add, k_del=args.k_del, max_rounds=args.rounds)
    if "repair" in parts:
        result["repair"] = repair(cases, extractor, pipe, config, args.steps, args.interpolator)
    if "generated" in parts:
        from procseq.data.dataset import load_split
        from procseq.eval.runner import per_domain

        records = per_domain(load_split(args.data, args.split), args.n_generated, args.domains.split(","))
        result["n_generated_per_domain"] = args.n_generated
        result["generated"] = generated(records, pipe, extractor, config, args.steps, args.interpolator)
    result["condition_lora"] = (pipe.condition_lora or {}).get("path")
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "adaptive.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
