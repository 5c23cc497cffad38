"""Planner grounding benchmark (issue 25): do the offline plan's captions say what the prompt says?

For n test-compositional specs of each domain (``generate(domain, seed, split="test-compositional")``):

- ``template``: the spec's own prompt (the corpus template); ``train-pool``: one train-pool phrasing of it;
  ``paraphrase``: one test-pool phrasing (the ``test-paraphrase`` wording, never read by the parser's lists).
  For each: ``recovered`` = named values the parser reads correctly / values the wording names;
  ``stated`` = named values the caption grammar states that the captions state correctly (a value is "stated"
  when the parser finds it in the spec's own captions); ``contradicted`` = prompts whose captions name a value
  differing from the truth (``parser.contradictions``); ``exact`` = plans whose captions equal the spec's own.
- ``recraft``: the plan read from the true final frame (:mod:`procseq.planning.reader`): attribute agreement with
  the spec over the attributes a prompt can state, next to the checker's own ceiling (the same attributes read
  with the true spec, as the corpus checker does).

    PYTHONPATH=src OMP_NUM_THREADS=1 python experiments/planner_bench.py --n 50 [--domains painting lego] [--json out.json]
        [--planner-file old_planning.py --no-recraft] [--generated runs/eval/SEQUENCES]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from procseq.data.synthetic import REGISTRY
from procseq.data.synthetic.base import domains_with_role, generate
from procseq.data.synthetic.phrasing import TEMPLATES, phrase_prompt
from procseq.planning import corpus_plan
from procseq.planning.parser import SLOT_KEYS, contradictions, named_attributes, parse_prompt, prompt_values

PLANNER = [corpus_plan]
"""The planner whose captions are scored (``--planner-file`` swaps in another version's ``corpus_plan``)."""


def score_wording(domain: str, prompt: str, keys: list[str], spec: Any, tally: dict[str, int]) -> None:
    """Add one prompt's counts to `tally`."""
    true = prompt_values(domain, spec.attributes)
    got = parse_prompt(domain, prompt)
    plan = PLANNER[0](prompt, domain, spec.num_frames)
    own = parse_prompt(domain, " ".join(spec.captions))
    for k in keys:
        tally["named"] += 1
        tally["recovered"] += got.get(k) == true[k]
        if k in own:
            tally["in_grammar"] += 1
            tally["stated"] += parse_prompt(domain, " ".join(plan.captions)).get(k) == true[k]
    tally["prompts"] += 1
    tally["contradicted"] += bool(contradictions(domain, {k: true[k] for k in keys}, plan.captions))
    tally["exact"] += plan.captions == spec.captions


def run(domains: list[str], n: int, recraft: bool = True) -> dict[str, Any]:
    """The benchmark's numbers per domain and wording."""
    results: dict[str, Any] = {}
    for domain in domains:
        res: dict[str, Any] = {}
        for wording in ("template", "train-pool", "paraphrase"):
            tally = dict.fromkeys(("prompts", "named", "recovered", "in_grammar", "stated", "contradicted", "exact"), 0)
            for seed in range(n):
                spec, _ = generate(domain, seed, split="test-compositional")
                if wording == "template":
                    prompt, keys = spec.prompt, sorted({k for ks in SLOT_KEYS[domain].values() for k in ks})
                else:
                    pool = "train" if wording == "train-pool" else "test"
                    prompt, tid = phrase_prompt(domain, spec.attributes, pool, np.random.default_rng([seed, 25]))
                    template = TEMPLATES[domain][0 if pool == "train" else 1][int(tid.rsplit("/", 1)[1])]
                    keys = named_attributes(domain, template)
                score_wording(domain, prompt, keys, spec, tally)
            res[wording] = tally
        if recraft:
            res["recraft"] = recraft_scores(domain, n)
        results[domain] = res
    return results


def recraft_scores(domain: str, n: int) -> dict[str, float]:
    """Agreement with the spec of the plan read from each true final frame (over the attributes a template
    names, and over those a final frame shows), and the checker's own accuracy on those frames (the ceiling)."""
    from procseq.data.synthetic.base import attribute_accuracy
    from procseq.planning.reader import picture_planner
    hidden = {"cooking": {"food", "count"}}.get(domain, set())  # a plated dish shows its cooked colour only
    agree = total = seen_agree = seen = unread = 0
    ceiling = []
    d = REGISTRY[domain]
    for seed in range(n):
        spec, frames = generate(domain, seed, split="test-compositional")
        true = {k: v for k, v in prompt_values(domain, spec.attributes).items()
                if k in {a for ks in SLOT_KEYS[domain].values() for a in ks}}  # what a prompt can name
        plan = picture_planner(frames[-1], domain, spec.num_frames - 1, spec.num_frames, corpus_plan)(
            "", domain, spec.num_frames)
        unread += "read_from_picture" not in plan.meta
        got = {**plan.meta.get("attributes", {}), **plan.meta.get("asked", {})}
        if domain == "lego":
            got["count"] = len(plan.captions) - 1
        ceiling.append(attribute_accuracy(d.read(frames[-1], spec), d.expected(spec, spec.num_frames - 1)))
        for k, v in true.items():
            total += 1
            agree += got.get(k) == v
            if k not in hidden:
                seen += 1
                seen_agree += got.get(k) == v
    return {"agree": agree / max(total, 1), "attributes": total, "agree_shown": seen_agree / max(seen, 1),
            "unread": unread, "checker": float(np.mean(ceiling))}


def generated_scores(folder: str) -> dict[str, dict[str, float]]:
    """The reader on a model's own final frames (sequence folders with their spec, as ``procseq eval`` writes
    them): agreement of the read plan with the spec, and the checker's accuracy on the same frames told the true
    spec (its ceiling there)."""
    from pathlib import Path

    from PIL import Image

    from procseq.data.synthetic.base import Spec, attribute_accuracy
    from procseq.planning.reader import picture_planner

    out: dict[str, dict[str, float]] = {}
    for record_path in sorted(Path(folder).glob("*/sequence.json")):
        record = json.loads(record_path.read_text())
        spec = Spec.from_dict(record["spec"])
        domain, n = spec.domain, spec.num_frames
        last = Image.open(record_path.parent / f"frame_{n - 1:02d}.png").convert("RGB")
        plan = picture_planner(last, domain, n - 1, n, corpus_plan)("", domain, n)
        got = {**plan.meta.get("attributes", {}), **plan.meta.get("asked", {})}
        true = {k: v for k, v in prompt_values(domain, spec.attributes).items()
                if k in {a for ks in SLOT_KEYS[domain].values() for a in ks} and k not in
                ({"food", "count"} if domain == "cooking" else set())}
        if domain == "lego":
            got["count"] = len(plan.captions) - 1
        t = out.setdefault(domain, {"n": 0, "agree": 0.0, "unread": 0, "checker": 0.0})
        t["n"] += 1
        t["unread"] += "read_from_picture" not in plan.meta
        t["agree"] += sum(got.get(k) == v for k, v in true.items()) / len(true)
        frame = np.asarray(last.resize((spec.frame_size, spec.frame_size)))
        t["checker"] += attribute_accuracy(REGISTRY[domain].read(frame, spec), REGISTRY[domain].expected(spec, n - 1))
    for t in out.values():
        t["agree"] /= t["n"]
        t["checker"] /= t["n"]
    return out


def main() -> None:
    """Print (and optionally write) the benchmark's table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--domains", nargs="*", default=domains_with_role("base"))
    ap.add_argument("--no-recraft", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--generated", default=None, help="also read the final frames of these sequence folders")
    ap.add_argument("--planner-file", default=None, help="score this planner module's corpus_plan instead (e.g. "
                    "git show 665cf77:src/procseq/pipelines/planning.py > /tmp/old_planning.py)")
    args = ap.parse_args()
    if args.planner_file:
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location("planner_under_test", args.planner_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        PLANNER[0] = module.corpus_plan
    if args.generated:
        for domain, t in generated_scores(args.generated).items():
            print(f"{domain:13s} generated  plan agrees {t['agree']:.3f} (n {t['n']}, unread {t['unread']}); checker "
                  f"with the true spec {t['checker']:.3f}")
        if not args.domains:
            return
    results = run(args.domains, args.n, not args.no_recraft)
    print("domain        wording     recovered      stated         contradicted  exact")
    for domain, res in results.items():
        for wording in ("template", "train-pool", "paraphrase"):
            t = res[wording]
            print(f"{domain:13s} {wording:11s} {t['recovered']:4d}/{t['named']:<4d}     {t['stated']:4d}/{t['in_grammar']:<4d}"
                  f"     {t['contradicted']:3d}/{t['prompts']:<3d}     {t['exact']:3d}/{t['prompts']}")
        if "recraft" in res:
            r = res["recraft"]
            print(f"{domain:13s} recraft     plan agrees {r['agree']:.3f} over {r['attributes']} attributes, "
                  f"{r['agree_shown']:.3f} over those a final frame shows; checker on true frames {r['checker']:.3f}; "
                  f"unread {r['unread']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
