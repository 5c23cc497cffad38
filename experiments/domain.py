"""Does ``--domain`` decide the process? Right domain vs a wrong one on prompts that do not name it (issue 12).

    python -m experiments.domain --model procseq-tiny --data ~/.cache/procseq/corpus-v2 --n 20 --out runs/eval-domain

For every record of the split (``test-paraphrase`` by default) whose prompt does not name its domain
(:func:`names_domain`), the model generates twice from the same prompt and seed: once with the record's
domain and once with a wrong one (:func:`wrong_domain`: the next of the evaluated domains, in order). Both
sequences are scored against the record's true spec by the shared scorer, so the wrong-domain run scores
how much of the right process the prompt alone carries. The figure is right minus wrong step accuracy.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from procseq.data.synthetic.base import domains_with_role
from procseq.domain_prompt import domain_phrase
from procseq.eval.report import Report
from procseq.eval.runner import evaluate_records, per_domain
from procseq.outputs import write_json_atomic


NAMES: dict[str, tuple[str, ...]] = {
    "painting": ("painting",), "line_drawing": ("line drawing",), "lego": ("lego",), "pixel_art": ("pixel",),
    "cooking": ("cooking", "cook"), "emoji": ("emoji",), "clay": ("clay",), "sand_art": ("sand art",),
    "origami": ("origami",),
}
"""Domain -> the words that name it in a prompt (others: the domain key with spaces, and its domain phrase)."""


def names_domain(prompt: str, domain: str) -> bool:
    """Whether `prompt` names `domain` (any of :data:`NAMES`, its key with spaces, or its domain phrase)."""
    names = {*NAMES.get(domain, ()), domain.replace("_", " "), domain_phrase(domain)}
    text = prompt.lower()
    return any(re.search(rf"\b{re.escape(name.lower())}\b", text) for name in names)


def wrong_domain(domain: str, domains: Sequence[str]) -> str:
    """The domain after `domain` in `domains` (cyclic): a fixed, different domain for every record."""
    if len(domains) < 2 or domain not in domains:
        raise ValueError(f"A wrong domain needs {domain!r} among at least two domains, got {list(domains)}.")
    return domains[(list(domains).index(domain) + 1) % len(domains)]


def unnamed_records(records: Sequence[Mapping[str, Any]], domains: Sequence[str], n: int | None) -> list[dict]:
    """The first `n` records per domain of `domains` whose prompt does not name the domain."""
    unnamed = [dict(r) for r in records if r["domain"] in domains and not names_domain(r["prompt"], r["domain"])]
    return per_domain(unnamed, n, domains)


def compare_domains(
    generate: Callable[[str, str, int, int], Any],
    records: Sequence[Mapping[str, Any]],
    domains: Sequence[str],
    out: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate every record with its domain and with :func:`wrong_domain`; score both against the truth.

    ``generate(prompt, domain, num_frames, seed)`` -> frames. Writes ``out/right/`` and ``out/wrong/``
    (``evaluate_records`` folders) and returns the two summaries and the right-minus-wrong differences.
    """
    out = Path(out)
    reports: dict[str, Report] = {}
    for which in ("right", "wrong"):
        def frames_fn(record: Mapping[str, Any], seed: int, which: str = which) -> Any:
            d = record["domain"] if which == "right" else wrong_domain(record["domain"], domains)
            return generate(str(record["prompt"]), d, int(record["num_frames"]), seed)

        reports[which] = evaluate_records(frames_fn, records, out / which, progress=progress, name=which)
    right, wrong = (reports[k].summary["overall"] for k in ("right", "wrong"))
    return {
        "n": len(records),
        "right": right,
        "wrong": wrong,
        "step_acc_gap": right["step_acc"] - wrong["step_acc"],
        "attribute_acc_gap": right["attribute_acc"] - wrong["attribute_acc"],
        "per_domain": {d: {k: reports[k].summary["domains"].get(d, {}).get("step_acc") for k in reports}
                       for d in domains},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from procseq.data.dataset import load_split
    from procseq.pipelines.loading import load_pipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (right/, wrong/, domain.json)")
    p.add_argument("--model", default="procseq-tiny", help="model folder or 'procseq-tiny'")
    p.add_argument("--data", default="data_cache/corpus", type=Path, help="corpus folder")
    p.add_argument("--split", default="test-paraphrase", help="split to draw the records from")
    p.add_argument("--n", default=20, type=int, help="records per domain (those whose prompt names no domain)")
    p.add_argument("--domains", default=",".join(domains_with_role("base")), help="comma-separated domains (>= 2)")
    a = p.parse_args(argv)
    domains = [d.strip() for d in a.domains.split(",") if d.strip()]
    if len(set(domains)) < 2:
        raise ValueError(f"--domains needs at least two domains (a right one and a wrong one), got {domains}.")
    records = unnamed_records(load_split(a.data, a.split), domains, a.n)
    if not records:
        raise SystemExit(f"procseq: no record of {a.split!r} leaves its domain unnamed; nothing to measure.")
    pipe = load_pipeline(a.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)

    def generate(prompt: str, domain: str, num_frames: int, seed: int) -> Any:
        g = torch.Generator("cpu").manual_seed(seed)
        return pipe(prompt, domain=domain, frames=num_frames, generator=g).frames[0]

    result = compare_domains(generate, records, domains, a.out)
    result.update(model=a.model, split=a.split, domains=domains, domain_prefix=pipe.defaults.domain_prefix)
    write_json_atomic(a.out / "domain.json", result)
    print(f"n={result['n']}  step acc right {result['right']['step_acc']:.3f}  wrong {result['wrong']['step_acc']:.3f}"
          f"  gap {result['step_acc_gap']:.3f}  (attribute acc gap {result['attribute_acc_gap']:.3f})")
    return result


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as err:  # bad options, a missing corpus or model: one line, no traceback
        raise SystemExit(f"procseq: error: {err}") from None
