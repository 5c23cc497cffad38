"""`procseq data make|montage`: the synthetic corpus."""

from __future__ import annotations

import json
from pathlib import Path

import click

from procseq.cli.common import (
    check_output_free,
    main,
)


@main.group()
def data() -> None:
    """The synthetic corpus: make it, or look at it."""


@data.command("make")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Corpus folder to create.")
@click.option("--per-domain", default=1000, show_default=True, type=int,
              help="Training sequences per base domain. The adapter domains (clay: 300, sand_art: 40) keep their "
                   "planned sizes, on purpose: the adapter experiments need them small and imbalanced (one with "
                   "<= 50 sequences); set them with --adapter-size. Origami is never trained on (test splits only).")
@click.option("--adapter-size", "adapter_sizes", multiple=True, metavar="DOMAIN=N",
              help="Training sequences of an adapter domain instead of its planned size, e.g. --adapter-size "
                   "clay=1000 (repeatable).")
@click.option("--test-per-domain", default=None, type=int, help="Sequences per domain in each test split "
              "(default: per-domain / 10).")
@click.option("--frame-size", default=32, show_default=True, type=int, help="Frame side in pixels (multiple of 8, >= 32).")
@click.option("--seed", default=0, show_default=True, type=int, help="Corpus seed.")
@click.option("--lengths", default="v1", show_default=True, type=click.Choice(["v1", "any"]),
              help="v1: every sequence at its domain's v1 length (9 or 4 frames). any: a length drawn per sequence "
              "from 3 up to what the domain's process allows (lego, pixel_art: 16; sand_art: 8; fixed-stage domains: their "
              "stage count), with lengths 7 and 13 held out of train into a test-length split.")
@click.option("--wording", default="template", show_default=True, type=click.Choice(["template", "paraphrase"]),
              help="template: every prompt in its domain's v1 wording. paraphrase: each spec in several phrasings "
              "(templates, synonyms, word order, imperative and descriptive, with and without the domain's name; "
              "step captions reworded too) from a train pool, plus a test-paraphrase split (held-out compositions) "
              "worded only from a test pool whose templates and synonyms never occur in train.")
@click.option("--phrasings", default=1, show_default=True, type=int,
              help="Phrasings stored per spec with --wording paraphrase (the row's prompts; training can use "
              "each as its own item: data.phrasings in the training config).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes that render sequences (the corpus is the same file for file with any number).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def data_make(out: Path, per_domain: int, adapter_sizes: tuple[str, ...], test_per_domain: int | None,
              frame_size: int, seed: int, lengths: str, wording: str, phrasings: int, workers: int,
              overwrite: bool) -> None:
    """Render the synthetic corpus: train, test-seen, test-compositional (+ test-length, test-paraphrase)
    as images + metadata.jsonl; datasets.load_dataset(OUT) loads every split by name."""
    from procseq.data.dataset import make_corpus
    from procseq.quiet import NORMAL, verbosity

    check_workers(workers)
    sizes = parse_adapter_sizes(adapter_sizes)
    check_output_free(out, overwrite)

    manifest = make_corpus(out, per_domain=per_domain, frame_size=frame_size, seed=seed,
                           test_per_domain=test_per_domain, overwrite=overwrite, lengths=lengths,
                           wording=wording, phrasings=phrasings, workers=workers, adapter_sizes=sizes,
                           progress=verbosity() >= NORMAL)
    click.echo(f"wrote {out}: " + json.dumps(manifest.get("counts", {})))


@data.command("montage")
@click.option("--out", "-o", default="docs/corpus.png", show_default=True, type=click.Path(path_type=Path),
              help="PNG to write.")
@click.option("--frame-size", default=32, show_default=True, type=int, help="Frame side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Which sequence of each domain.")
def data_montage(out: Path, frame_size: int, seed: int) -> None:
    """One ground-truth sequence per domain in one labelled PNG."""
    from procseq.data.dataset import montage

    click.echo(f"wrote {montage(out, frame_size=frame_size, seed=seed)}")


def parse_adapter_sizes(items: tuple[str, ...]) -> dict[str, int] | None:
    """``("clay=1000",)`` -> ``{"clay": 1000}``; only adapter domains, counts >= 1 (``ValueError`` otherwise)."""
    from procseq.data.synthetic.base import domains_with_role

    adapters, sizes = domains_with_role("adapter"), {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in adapters or not value.isdigit() or int(value) < 1:
            raise ValueError(f"Bad --adapter-size {item!r}; use DOMAIN=N with DOMAIN one of {', '.join(adapters)} "
                             "and N >= 1, e.g. --adapter-size clay=1000.")
        sizes[name] = int(value)
    return sizes or None


def check_workers(workers: int) -> None:
    """Refuse more ``--workers`` than this process may use cores (more only queue up and multiply the memory)."""
    import os

    from procseq.limits import check_int

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    check_int(workers, f"--workers (this machine has {cores} core{'s' * (cores > 1)})", 1, max(1, cores))
