"""Calibrate adaptive steps' thresholds on the TRAINING split's ground truth (never on a test split).

    python -m experiments.adaptive_calibration --data data_cache/corpus --n 40 \
        --out src/procseq/embedded/procseq-tiny/adaptive_calibration.json   (from the repository root)

With ``--n-insertion m`` (default 10) each domain also gets the insertion (the neighbours' average, the model
from both neighbours, or the model from the whole sequence) that filled the dropped step of its first m training
sequences right most often (ties: the cheaper, in that order).

For each base domain, the first `n` training sequences give the statistics of true adjacent steps (mean and
standard deviation of every term, :mod:`procseq.pipelines.adaptive_rule`), and constructed cases choose the
rule: **clean** (the truth) and **drop** (each interior step removed in turn; the right action is one
insertion at that gap and nothing else). Each candidate weighting of the insertion score gets the
``tau_add`` that leaves at most `clean_rate` of the clean sequences with an insertion; the weighting that
repairs the most drops wins (ties, to two decimals: the one that reads both the frames and the captions,
then relative image terms, then the one with more drops above every clean sequence's largest score). ``tau_del`` is `del_fraction` of the smallest true step (its 1 % quantile):
a repeated frame with its caption repeated has ``D_del = 0``. The order term of a training pair is
measured leave-one-sequence-out (against the other sequences' caption pairs). ``tau_add`` is moved `margin` of the way
from that clean quantile to the median score of the dropped steps when they lie above it (a margin on the clean
side: test captions with unseen attribute combinations move the order term away from its training values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from procseq.pipelines.insertion import INSERTIONS
from procseq.pipelines.adaptive_rule import ALL_TERMS, Calibration, DomainCalibration, order_margin, pair_terms, pixels, with_relative

ADD_WEIGHTINGS: list[dict[str, float]] = [
    {"global": 0.5, "local": 0.5}, {"local": 1.0}, {"order": 1.0},
    {"global": 0.25, "local": 0.25, "order": 0.5}, {"global": 1 / 3, "local": 1 / 3, "order": 1 / 3},
    {"global": 0.4, "local": 0.4, "semantic": 0.2}, {"local": 0.5, "order": 0.5}, {"local": 0.7, "order": 0.3},
    {"global": 0.5, "order": 0.5}, {"local_rel": 1.0}, {"global_rel": 0.5, "local_rel": 0.5},
    {"local_rel": 0.5, "order": 0.5}, {"global_rel": 0.25, "local_rel": 0.25, "order": 0.5},
    {"local": 0.25, "local_rel": 0.25, "order": 0.5}, {"local": 0.5, "local_rel": 0.5},
    {"pixel_rel": 1.0}, {"pixel": 1.0}, {"pixel_rel": 0.5, "order": 0.5}, {"pixel": 0.5, "pixel_rel": 0.5},
    {"pixel_rel": 0.5, "local": 0.5}, {"pixel_rel": 0.4, "local": 0.3, "order": 0.3},
]
"""The insertion weightings tried per domain (ProcessMaker's three terms, and with the order term)."""
DEL_WEIGHTS = {"global": 0.4, "local": 0.4, "semantic": 0.2}


def _order_loo(texts: list[torch.Tensor], captions: list[list[str]], gap: int) -> list[np.ndarray]:
    """Per sequence, the order term of its pairs (i, i + gap) against the OTHER sequences' pairs."""
    def pairs(g: int) -> tuple[torch.Tensor, list[tuple[str, str]], list[int]]:
        vecs, keys, owner = [], [], []
        for r, (t, c) in enumerate(zip(texts, captions)):
            for i in range(len(c) - g):
                vecs.append(torch.cat([t[i], t[i + g]]))
                keys.append((c[i], c[i + g]))
                owner.append(r)
        return torch.stack(vecs), keys, owner

    adj, skip = pairs(1), pairs(2)
    out = []
    for r, (t, c) in enumerate(zip(texts, captions)):
        values = []
        for i in range(len(c) - gap):
            q = torch.cat([t[i], t[i + gap]])[None]
            ma = torch.tensor([o != r for o in adj[2]])
            ms = torch.tensor([o != r for o in skip[2]])
            values.append(float(order_margin(q, adj[0][ma], skip[0][ms])[0]))
        out.append(np.array(values))
    return out


def domain_terms(records: list[dict[str, Any]], extractor: Any, local: str) -> list[dict[str, Any]]:
    """Per sequence: raw terms of its adjacent pairs and of its pairs one step apart."""
    from procseq.data.dataset import load_truth

    feats, texts, pix = [], [], []
    for record in records:
        frames = load_truth(record)
        feats.append(extractor.image_features(frames))
        pix.append(pixels(frames))
        texts.append(torch.nn.functional.normalize(extractor.text_features(record["captions"]).double(), dim=-1))
    caps = [list(r["captions"]) for r in records]
    o1, o2 = _order_loo(texts, caps, 1), _order_loo(texts, caps, 2)
    out = []
    for f, t, a, s, px in zip(feats, texts, o1, o2, pix):
        n = len(f.embeds)
        out.append({"adjacent": pair_terms(f, t, a, local, pix=px),
                    "skip": pair_terms(f, t, s, local, [(i, i + 2) for i in range(n - 2)], px)})
    return out


def _key(cal: DomainCalibration) -> tuple[float, bool, bool, float]:
    """Rank of a weighting: drops repaired (two decimals), then image AND text evidence, then relative image
    terms only (scale-free: a sequence of large steps is not a sequence of gaps), then the wider margin."""
    terms = set(cal.add_weights)
    both = bool(terms & {"order", "semantic"}) and bool(terms - {"order", "semantic"})
    relative = not terms & {"global", "local", "pixel"}
    return round(cal.train["drop_repaired"], 2), both, relative, cal.train["drop_above_every_clean"]


def choose(seqs: list[dict[str, Any]], clean_rate: float, del_fraction: float, margin: float = 0.25
           ) -> DomainCalibration:
    """Statistics, weights and thresholds of one domain from its sequences' terms (see the module docstring)."""
    clean = [with_relative(s["adjacent"]) for s in seqs]
    dropped = [[with_relative(s["adjacent"][:k - 1] + [s["skip"][k - 1]] + s["adjacent"][k + 1:])
                for k in range(1, len(s["adjacent"]))] for s in seqs]
    adj = [x for c in clean for x in c]
    mean = {t: float(np.mean([x[t] for x in adj])) for t in ALL_TERMS}
    std = {t: max(float(np.std([x[t] for x in adj])), 0.1 * abs(mean[t]), 1e-3) for t in ALL_TERMS}  # a floor:
    # a term constant on the training split (e.g. the order term of a domain whose captions all recur) would
    # otherwise turn any test-time wobble into thousands of sigmas
    best: DomainCalibration | None = None
    for weights in ADD_WEIGHTINGS:
        cal = DomainCalibration(mean, std, weights, 0.0, DEL_WEIGHTS, 0.0)
        clean_max = np.array([max(cal.d_add(x) for x in c) for c in clean])
        tau = float(np.quantile(clean_max, 1.0 - clean_rate)) + 1e-9
        skip_median = float(np.median([cal.d_add(pairs[k - 1]) for cases in dropped for k, pairs in enumerate(cases, 1)]))
        tau = max(tau, tau + margin * (skip_median - tau))
        strict = float(clean_max.max()) + 1e-9
        right, above, drops = 0, 0, 0
        for cases in dropped:
            for k, pairs in enumerate(cases, 1):  # drop frame k: pairs (k-1, k), (k, k+1) become (k-1, k+1)
                d = [cal.d_add(x) for x in pairs]
                others = [v for j, v in enumerate(d) if j != k - 1]
                right += int(d[k - 1] > tau and all(v <= tau for v in others))
                above += int(d[k - 1] > strict)
                drops += 1
        rate = right / max(drops, 1)
        cal.tau_add, cal.train = tau, {"drop_repaired": rate, "clean_with_insertion": float(np.mean(clean_max > tau)),
                                       "drop_above_every_clean": above / max(drops, 1), "sequences": len(seqs)}
        if best is None or _key(cal) > _key(best):
            best = cal
    assert best is not None
    d_del = np.array([best.d_del(x) for x in adj])
    best.tau_del = float(del_fraction * np.quantile(d_del, 0.01))
    best.train["clean_with_deletion"] = float(np.mean([min(best.d_del(x) for x in c) < best.tau_del for c in clean]))
    return best


def choose_insertion(records: list[dict[str, Any]], pipe: Any, steps: int | None = None,
                     kinds: tuple[str, ...] = INSERTIONS) -> dict[str, float]:
    """How often each insertion fills a dropped training step right (step ``1 + index % (n - 2)`` of each record;
    the filled frame nearer that true step than any other): ``{"average": rate, "model": rate, ...}``."""
    from procseq.eval.metrics import score_sequence
    from procseq.data.dataset import load_truth
    from procseq.eval.scorer import spec_from_dict
    from procseq.pipelines.insertion import fill, make_insertion

    hits = dict.fromkeys(kinds, 0)
    for index, record in enumerate(records):
        frames, captions, spec = load_truth(record), list(record["captions"]), spec_from_dict(record["spec"])
        k = 1 + index % (len(frames) - 2)
        rest, rest_captions = frames[:k] + frames[k + 1:], captions[:k] + captions[k + 1:]
        for name in kinds:
            interp = make_insertion(name, pipe, record["prompt"], record["domain"], allow_unseen=True,
                                    num_inference_steps=steps, true_cfg_scale=1.0)
            frame = fill(interp, rest, rest_captions, k - 1, captions[k], index)
            filled = frames[:k] + [frame.convert("RGB")] + frames[k + 1:]
            hits[name] += int(score_sequence(filled, spec).frames[k].step_correct)
    return {name: h / max(len(records), 1) for name, h in hits.items()}


def calibrate(data: str | Path, extractor: Any, n: int = 40, domains: list[str] | None = None,
              local: str = "patch", clean_rate: float = 0.02, del_fraction: float = 0.5,
              split: str = "train", margin: float = 0.25, pipe: Any = None, n_insertion: int = 10,
              insertions: tuple[str, ...] = INSERTIONS) -> Calibration:
    """The :class:`Calibration` of `extractor` on the first `n` sequences per domain of the training split; with
    `pipe`, each domain's insertion is chosen among `insertions` on its first `n_insertion` sequences
    (:func:`choose_insertion`)."""
    if bad := sorted(set(insertions) - set(INSERTIONS)):
        raise ValueError(f"Unknown insertion {', '.join(bad)}; choose from {', '.join(INSERTIONS)}.")
    from procseq.data.dataset import load_split
    from procseq.eval.runner import per_domain

    if split != "train":
        raise ValueError(f"Calibrate on the training split only (got {split!r}); the test splits judge the rule.")
    records = per_domain(load_split(data, split), n, domains)
    out, pairs = {}, {}
    for domain in sorted({r["domain"] for r in records}):
        recs = [r for r in records if r["domain"] == domain]
        out[domain] = choose(domain_terms(recs, extractor, local), clean_rate, del_fraction, margin)
        if pipe is not None:
            rates = choose_insertion(recs[:n_insertion], pipe, kinds=tuple(insertions))
            out[domain].train.update({f"fill_{k}": v for k, v in rates.items()})
            out[domain].insertion = max(rates, key=lambda name: (rates[name], -INSERTIONS.index(name)))
        caps = [list(r["captions"]) for r in recs]
        pairs[domain] = {"adjacent": sorted({(c[i], c[i + 1]) for c in caps for i in range(len(c) - 1)}),
                         "skip": sorted({(c[i], c[i + 2], c[i + 1]) for c in caps for i in range(len(c) - 2)})}
        print(domain, out[domain].add_weights, {k: round(v, 3) for k, v in out[domain].train.items()}, flush=True)
    return Calibration(out, pairs, "model", local, {"split": split, "n_per_domain": n, "clean_rate": clean_rate,
                                                   "del_fraction": del_fraction, "margin": margin,
                                                   "n_insertion": n_insertion if pipe is not None else 0,
                                                   "insertions": list(insertions) if pipe is not None else []})

