"""Token counts of adapter-domain prompts and 16-step plans under the shipped (v2) tokenizers and under
tokenizers built from every training domain's text (``model.tokenizer_texts: all-domains``).

    python -m experiments.tokenizer_lengths [--specs 40]

Prints, per text family, max and p95 of the T5 and CLIP token counts (untruncated, specials included), and
the share of texts over 64 tokens.
"""

from __future__ import annotations

import argparse

import numpy as np
from transformers import AutoTokenizer

from procseq.data.synthetic import get_domain
from procseq.data.synthetic.base import stable_hash, train_lengths
from procseq.data.synthetic.phrasing import fill_template, phrase_captions, templates
from procseq.domain_prompt import with_domain
from procseq.models.loading import resolve_model
from procseq.models.tiny import TinyConfig, build_tokenizers
from procseq.training.run import all_domain_texts


def families(specs: int) -> dict[str, list[str]]:
    """Text families measured: adapter-domain prompts (train and test pool, with the domain and step count in
    front, as the v2/v3 models read them) whole 16-step plans (prompt then every caption) and their step captions one by one."""
    out: dict[str, list[str]] = {}
    for name in ("clay", "sand_art"):
        for pool in ("train", "test"):
            texts = out.setdefault(f"{name} prompts ({pool} pool)", [])
            for i in range(specs):
                rng = np.random.default_rng([7, stable_hash("measure", name, pool, i)])
                n = train_lengths(name)[i % len(train_lengths(name))]
                spec = get_domain(name).sample(rng, 32, "test-paraphrase" if pool == "test" else "train", n)
                texts += [with_domain(fill_template(name, t, spec.attributes, pool, rng), name, n)
                          for t in templates(name, pool)]
    for name in ("lego", "pixel_art"):
        texts = out.setdefault(f"{name} 16-step plans", [])
        steps = out.setdefault(f"{name} 16-step captions", [])
        for i in range(specs):
            rng = np.random.default_rng([7, stable_hash("plan", name, i)])
            spec = get_domain(name).sample(rng, 32, "train", 16)
            caps = phrase_captions(spec.captions, "train", rng, name, spec.attributes) if i % 2 else spec.captions
            texts.append(with_domain(spec.prompt, name, 16) + " " + "; ".join(caps))
            steps += caps
    return out


def stats(tok, texts: list[str]) -> str:
    n = np.array([len(tok(t, truncation=False).input_ids) for t in texts])
    return f"max {n.max():3d} p95 {np.percentile(n, 95):5.1f} >64 {np.mean(n > 64):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=40)
    args = ap.parse_args()
    root = resolve_model("procseq-tiny")
    old = (AutoTokenizer.from_pretrained(f"{root}/tokenizer"), AutoTokenizer.from_pretrained(f"{root}/tokenizer_2"))
    clip, t5 = build_tokenizers(TinyConfig(clip_max_length=64, t5_max_length=64), all_domain_texts("/nonexistent"))
    print(f"{'family':34s} {'tokenizer':12s} {'T5':28s} CLIP")
    for family, texts in families(args.specs).items():
        for label, (c, t) in (("v2 shipped", old), ("all-domains", (clip, t5))):
            print(f"{family:34s} {label:12s} {stats(t, texts):28s} {stats(c, texts)}")


if __name__ == "__main__":
    main()
