"""Does adaptive steps repair a sequence? The cases a user meets, on true and generated sequences (issue 27).

    python -m experiments.adaptive_repair --data data_cache/corpus --split test-compositional --n 5 \
        --out runs/adaptive-repair

For each record (the first `n` per base domain of the split) and each source (``truth``: its true frames and
captions; ``generated``: the model's own sequence for its prompt, seed = record index), three cases:

- **drop**: step ``k = 1 + index % (n - 2)`` removed (frame and caption). Found = exactly one edit, an
  insertion in that gap; then the filled frame is scored (:func:`procseq.eval.metrics.score_sequence`: is it
  nearer to true step k than to any other) for each insertion (the neighbours' average, the model from both
  neighbours, the model from the whole sequence with the gap its one free cell, and ``auto``: the one the
  calibration chose for the domain on training sequences);
- **duplicate**: step k repeated (frame and caption). Removed = exactly one edit, a deletion at that pair;
- **clean**: the sequence as it is. Any edit is a false positive; step accuracy before and after (a
  sequence of another length is resampled to the spec's count, first and last kept).

The plan given to adaptive steps is the full plan (the record's captions, or the generated sequence's plan),
as ``sequence.json`` holds it after ``procseq generate``; it only writes the inserted step's caption, it
decides nothing. Rules: ``calibrated`` (the training split's thresholds beside the model) and ``sequence``
(ProcessMaker's own-statistics rule, defaults).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.adaptive import construct
from experiments.common import DOMAINS
from procseq.pipelines.adaptive import AdaptiveConfig, adapt_frames


def _edits(res: Any) -> list[dict[str, Any]]:
    return [a for rd in res.record["rounds"] for a in rd["actions"]]


def run_case(case: str, frames: list[Any], captions: list[str], plan: list[str], spec: Any, index: int,
             domain: str, extractor: Any, config: AdaptiveConfig, interpolators: dict[str, Any]) -> dict[str, Any]:
    """One case under one rule: what was edited, whether it was right, and the step accuracies."""
    from procseq.eval.baselines import resample
    from procseq.eval.metrics import score_sequence
    from procseq.pipelines.insertion import fill

    n = int(spec.num_frames)
    f, c, target = construct(frames, captions, case, index)
    row: dict[str, Any] = {"case": case, "domain": domain}
    default = next(iter(interpolators.values()))
    res = adapt_frames(f, c, extractor, default, config, seed=index, domain=domain, plan=plan)
    edits = _edits(res)
    row["edits"] = len(edits)
    row["kinds"] = [(e["op"], e.get("between", e.get("pair"))[0]) for e in edits]
    if case == "drop":
        row["found"] = float(len(edits) == 1 and edits[0]["op"] == "insert" and edits[0]["between"][0] == target)
        if row["found"]:
            row["caption_from_plan"] = float(edits[0].get("caption_from") == "plan")
            for name, interp in interpolators.items():  # every insertion fills the same gap, same seed
                frame = fill(interp, f, c, target, edits[0]["caption"], index + target)
                filled = f[:target + 1] + [frame.convert("RGB")] + f[target + 1:]
                row[f"fill_{name}"] = float(score_sequence(filled, spec).frames[target + 1].step_correct)
            if config.calibration is not None and domain in config.calibration.domains:
                chosen = f"fill_{config.calibration.domains[domain].insertion}"
                if chosen in row:
                    row["fill_auto"] = row[chosen]
    elif case == "duplicate":
        row["found"] = float(len(edits) == 1 and edits[0]["op"] == "delete" and edits[0]["pair"][0] == target)
        row["other_removed"] = float(any(e["op"] == "delete" and e["pair"][0] != target for e in edits)
                                     or sum(e["op"] == "delete" for e in edits) > 1)
    else:
        row["edited"] = float(bool(edits))
        row["before"] = score_sequence(resample(f, n), spec).step_acc
        row["after"] = score_sequence(resample(res.frames, n), spec).step_acc
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean of every measured value per (source, rule, case), with the count."""
    out: dict[str, dict[str, Any]] = {}
    for key in sorted({(r["source"], r["rule"], r["case"]) for r in rows}):
        rs = [r for r in rows if (r["source"], r["rule"], r["case"]) == key]
        fields = sorted({k for r in rs for k, v in r.items() if isinstance(v, float)})
        out[" / ".join(key)] = {"n": len(rs), **{k: float(np.mean([r[k] for r in rs if k in r])) for k in fields},
                                **{f"n_{k}": sum(k in r for r in rs) for k in fields if k.startswith("fill_")}}
    return out


RULE_NAMES = {"calibrated": "**calibrated**", "sequence": "sequence (ProcessMaker, k_add 2, k_del 1.5)"}


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    """The BENCHMARKS rows of a :func:`summarize` result: the cases table, then the filled frame per insertion."""
    def get(source: str, rule: str, case: str) -> dict[str, Any]:
        return summary.get(f"{source} / {rule} / {case}", {})

    pairs = [(s, r) for s in ("truth", "generated") for r in RULE_NAMES if get(s, r, "drop")]
    lines = ["| source | rule | drop: gap found and filled | duplicate removed (other frame removed) | clean: edited "
             "| clean: step acc before -> after |", "|---|---|---|---|---|---|"]
    for source, rule in pairs:
        drop, dup, clean = get(source, rule, "drop"), get(source, rule, "duplicate"), get(source, rule, "clean")
        found = round(drop.get("found", 0.0) * drop["n"])
        lines.append(f"| {source} | {RULE_NAMES[rule]} | {drop.get('found', 0):.2f} ({found}/{drop['n']}) | "
                     f"{dup.get('found', 0):.2f} ({dup.get('other_removed', 0):.2f}) | {clean.get('edited', 0):.2f} | "
                     f"{clean.get('before', float('nan')):.3f} -> {clean.get('after', float('nan')):.3f} |")
    sources = [s for s in ("truth", "generated") if get(s, "calibrated", "drop")]
    kinds = [k for k in ("auto", "average", "model", "sequence")
             if any(f"fill_{k}" in get(s, "calibrated", "drop") for s in sources)]
    lines += ["", "| insertion (calibrated rule, gaps found) | " + " | ".join(sources) + " |",
              "|---|" + "---|" * len(sources)]
    for kind in kinds:
        cells = [f"{get(s, 'calibrated', 'drop').get(f'fill_{kind}', float('nan')):.3f} "
                 f"(n={get(s, 'calibrated', 'drop').get(f'n_fill_{kind}', 0)})" for s in sources]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring); returns what it wrote to ``adaptive_repair.json``."""
    from procseq.data.dataset import load_split
    from procseq.data.dataset import load_truth
    from procseq.eval.runner import per_domain
    from procseq.eval.scorer import spec_from_dict
    from procseq.models.features import PipelineFeatures
    from procseq.pipelines.loading import load_pipeline
    from procseq.pipelines.adaptive_rule import Calibration, find_calibration
    from procseq.pipelines.insertion import make_insertion

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", default="data_cache/corpus", type=Path)
    p.add_argument("--split", default="test-compositional")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--calibration", default=None, type=Path,
                   help="calibration JSON of the calibrated rule (default: adaptive_calibration.json beside the model)")
    p.add_argument("--n", default=5, type=int, help="records per domain")
    p.add_argument("--domains", default=DOMAINS)
    p.add_argument("--sources", default="truth,generated")
    p.add_argument("--rules", default="calibrated,sequence")
    p.add_argument("--insertions", default="average,model,sequence",
                   help="the insertions that fill each gap found (average, model: from both neighbours, sequence: "
                        "from the whole sequence)")
    p.add_argument("--insert-steps", default=None, type=int, help="denoising steps of a model insertion")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pipe = load_pipeline(args.model, device="cpu", adapters="none")
    pipe.set_progress_bar_config(disable=True)
    extractor = PipelineFeatures(pipe)
    path = args.calibration or find_calibration(pipe.model_folder)
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"No calibration at {path}; write one with python -m experiments.adaptive_calibration.")
    if path is None and "calibrated" in args.rules:
        raise FileNotFoundError(f"{pipe.model_folder} has no adaptive calibration; write one first.")
    configs = {"calibrated": AdaptiveConfig(calibration=Calibration.load(path) if path else None),
               "sequence": AdaptiveConfig()}
    rows: list[dict[str, Any]] = []
    records = per_domain(load_split(args.data, args.split), args.n, args.domains.split(","))
    for index, record in enumerate(records):
        spec, domain = spec_from_dict(record["spec"]), record["domain"]
        n = int(spec.num_frames)
        interps = {name: make_insertion(name, pipe, record["prompt"], domain, allow_unseen=True,
                                        num_inference_steps=args.insert_steps, true_cfg_scale=1.0)
                   for name in ["average", *(k for k in args.insertions.split(",") if k != "average")]}
        for source in args.sources.split(","):
            if source == "truth":
                frames, captions, plan = load_truth(record), list(record["captions"]), list(record["captions"])
            else:
                out = pipe(record["prompt"], domain=domain, frames=n, generator=torch.Generator().manual_seed(index))
                frames, captions = out.frames[0], out.captions[0]
                plan = out.plans[0].captions if out.plans else captions
            for rule in args.rules.split(","):
                for case in ("drop", "duplicate", "clean"):
                    row = run_case(case, frames, captions, plan, spec, index, domain, extractor,
                                   replace(configs[rule]), interps)
                    rows.append({"source": source, "rule": rule, "index": index, **row})
        print(f"{index + 1}/{len(records)}", flush=True)
    result = {"split": args.split, "n_per_domain": args.n, "calibration": str(path), "rows": rows,
              "summary": summarize(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive_repair.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(markdown(result["summary"]))
    return result


if __name__ == "__main__":
    main()
