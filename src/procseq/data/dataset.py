"""On-disk synthetic corpus, torch Dataset, montage.

Layout written by :func:`make_corpus` (every split folder is a valid Hugging Face ``imagefolder``)::

    DIR/manifest.json                         settings, plan and counts
    DIR/README.md                             a dataset card whose ``configs`` name every split
    DIR/<split>/metadata.jsonl                one row per sequence: file_name, id, prompt, domain,
                                              captions, num_frames, frames_file_names, spec
                                              (Spec.to_dict() as a JSON string; load_split parses
                                              it); with paraphrases also prompts and template
    DIR/<split>/<id>.png                      the serpentine grid (procseq.layout.frames_to_grid)
    DIR/<split>/frames/<id>_XX.png            the individual frames

Load every split by name with ``datasets.load_dataset(DIR)`` (split names with ``_`` for ``-``:
``test_seen``, ...; datasets allows no hyphen), or one with
``datasets.load_dataset("imagefolder", data_dir=f"{DIR}/{split}", split="train")``: the grid is
the ``image`` column and ``frames`` is the list of per-step images (imagefolder reads
``*_file_names`` columns as images, relative to the metadata file). Corpora written before v2 kept
frames in ``DIR/frames/<split>/`` (the ``frames`` column, relative to DIR); :func:`load_split` reads both.

Wordings (``wording="paraphrase"``): every row's ``prompt`` is one phrasing of its spec
(:mod:`procseq.data.synthetic.phrasing`), ``prompts`` holds ``phrasings`` of them, the captions are
reworded too; the spec keeps the canonical (v1) text. ``test-paraphrase`` holds held-out
compositions worded only with the test pool.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from procseq.cards import dataset_card
from procseq.data.synthetic import DOMAIN_PLAN, REGISTRY, generate, get_domain
from procseq.data.synthetic.phrasing import phrase_captions, phrase_prompt
from procseq.domain_prompt import with_domain
from procseq.data.synthetic.base import (
    HELD_OUT_LENGTHS, check_frame_size, check_split, held_out_lengths, stable_hash, train_lengths,
)
from procseq.jsonio import loads
from procseq.layout import frames_to_grid, grid_shape
from procseq.outputs import atomic_file, atomic_output_dir, write_json_atomic


def sequence_seed(seed: int, domain: str, split: str, index: int) -> int:
    """The generation seed of sequence `index` of `domain` in `split` (stable across processes)."""
    return stable_hash(seed, domain, split, index)


LENGTH_MODES = ("v1", "any")
"""``v1``: every sequence at its domain's v1 length (9 or 4 frames); ``any``: a length drawn per
sequence from the domain's lengths, :data:`HELD_OUT_LENGTHS` only in the ``test-length`` split."""
V1_SPLITS = ("train", "test-seen", "test-compositional")
WORDINGS = ("template", "paraphrase")
"""``template``: the v1 prompt of every spec; ``paraphrase``: phrasings from the train pool, and a
``test-paraphrase`` split worded from the test pool only."""


def corpus_counts(per_domain: int, test_per_domain: int, adapter_sizes: dict[str, int] | None = None,
                  lengths: str = "v1", wording: str = "template") -> dict[str, dict[str, int]]:
    """Sequences per split and domain under DOMAIN_PLAN (base: `per_domain` train; adapter: its own
    size; unseen: none in train; every domain `test_per_domain` in each test split; with
    ``lengths="any"`` also ``test-length``, for the domains long enough to have a held-out length;
    with ``wording="paraphrase"`` also ``test-paraphrase``)."""
    check_length_mode(lengths)
    if wording not in WORDINGS:
        raise ValueError(f"Unknown wording {wording!r}; use one of {', '.join(WORDINGS)}.")
    sizes = {n: r.train_size for n, r in DOMAIN_PLAN.items() if r.role == "adapter"}
    sizes.update(adapter_sizes or {})
    splits = (V1_SPLITS + (("test-length",) if lengths == "any" else ())
              + (("test-paraphrase",) if wording == "paraphrase" else ()))
    out: dict[str, dict[str, int]] = {split: {} for split in splits}
    for name, role in DOMAIN_PLAN.items():
        out["train"][name] = {"base": per_domain, "adapter": sizes.get(name, 0), "unseen": 0}[role.role]
        for split in set(splits) - {"train", "test-length"}:
            out[split][name] = test_per_domain
        if "test-length" in out and held_out_lengths(name):
            out["test-length"][name] = test_per_domain
    return out


def check_length_mode(lengths: str) -> None:
    """Raise ValueError unless `lengths` is one of :data:`LENGTH_MODES`."""
    if lengths not in LENGTH_MODES:
        raise ValueError(f"Unknown lengths mode {lengths!r}; use one of {', '.join(LENGTH_MODES)}.")


def sequence_length(seed: int, domain: str, split: str, index: int, lengths: str = "v1") -> int:
    """The frame count of sequence `index` of `domain` in `split`: the v1 length, or (``any``) drawn
    uniformly from the lengths the split allows (``test-length``: the held-out ones, else the rest)."""
    check_length_mode(lengths)
    if lengths == "v1":
        return get_domain(domain).num_frames
    options = held_out_lengths(domain) if split == "test-length" else train_lengths(domain)
    if not options:
        raise ValueError(f"{domain} has no length for {split} (held-out lengths {HELD_OUT_LENGTHS}).")
    return options[stable_hash("length", seed, domain, split, index) % len(options)]


def make_corpus(
    out_dir: str | Path,
    per_domain: int = 1000,
    frame_size: int = 32,
    seed: int = 0,
    progress: bool = True,
    test_per_domain: int | None = None,
    adapter_sizes: dict[str, int] | None = None,
    overwrite: bool = False,
    lengths: str = "v1",
    wording: str = "template",
    phrasings: int = 1,
    workers: int = 1,
) -> dict[str, Any]:
    """Write train / test-seen / test-compositional (and ``test-length`` with ``lengths="any"``,
    ``test-paraphrase`` with ``wording="paraphrase"``) for DOMAIN_PLAN into `out_dir`, atomically.
    `lengths` (:data:`LENGTH_MODES`) decides the frame counts, `wording` (:data:`WORDINGS`) the text,
    `phrasings` how many phrasings of each spec a paraphrased row stores. `workers` > 1 renders in that
    many processes; the corpus is the same file for file (every sequence has its own seed).

    Everything is written to a temporary sibling folder that is renamed into place at the end, so
    an error leaves nothing half-written. Returns the manifest (settings and counts).
    """
    check_frame_size(frame_size)
    if per_domain < 1:
        raise ValueError(f"per_domain={per_domain} must be >= 1.")
    if test_per_domain is not None and test_per_domain < 1:
        raise ValueError(f"test_per_domain={test_per_domain} must be >= 1.")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass overwrite=True (--overwrite) or choose another out_dir.")
    if phrasings < 1 or (wording == "template" and phrasings != 1):
        raise ValueError(f"phrasings={phrasings}: use 1 with the template wording, >= 1 with paraphrase.")
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1.")
    test_n = max(1, per_domain // 10) if test_per_domain is None else test_per_domain
    counts = corpus_counts(per_domain, test_n, adapter_sizes, lengths, wording)
    total = sum(sum(c.values()) for c in counts.values())
    tasks = [(split, domain, i, seed, frame_size, sequence_length(seed, domain, split, i, lengths), wording, phrasings)
             for split, per in counts.items() for domain, n in per.items() for i in range(n)]
    with atomic_output_dir(out, overwrite) as tmp, tqdm(total=total, disable=not progress, desc="corpus") as bar, \
            contextlib.ExitStack() as stack:  # (the bar closes on an error too: the error gets a line of its own)
        metas = {}
        for split in counts:
            (tmp / split / "frames").mkdir(parents=True)
            metas[split] = stack.enter_context(open(tmp / split / "metadata.jsonl", "w"))
        if workers == 1:
            rows = (_corpus_row(tmp, *task) for task in tasks)
        else:  # every sequence has its own seed, so the files are the same whoever writes them; rows come in order
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            stack.callback(pool.shutdown, cancel_futures=True)  # an error: drop the sequences not yet started
            rows = pool.map(partial(_corpus_row_star, tmp), tasks, chunksize=max(1, min(64, len(tasks) // (8 * workers))))
        for (split, *_), line in zip(tasks, rows):
            metas[split].write(line)
            bar.update()
        manifest = {"frame_size": frame_size, "seed": seed, "per_domain": per_domain, "test_per_domain": test_n,
                    "plan": {n: {"role": r.role, "train_size": r.train_size} for n, r in DOMAIN_PLAN.items()},
                    "held_out": {n: sorted(get_domain(n).held_out()) for n in DOMAIN_PLAN}, "counts": counts,
                    "lengths": lengths, "held_out_lengths": list(HELD_OUT_LENGTHS),
                    "domain_lengths": {n: get_domain(n).lengths for n in DOMAIN_PLAN},
                    "wording": wording, "phrasings": phrasings}
        write_json_atomic(tmp / "manifest.json", manifest)
        (tmp / "README.md").write_text(dataset_card(list(counts), manifest))
    return manifest


def _corpus_row(root: Path, split: str, domain: str, index: int, seed: int, frame_size: int, num_frames: int,
                wording: str, phrasings: int) -> str:
    """Render sequence `index` of `domain` in `split` into `root` and return its metadata.jsonl line."""
    row = _write_sequence(root, split, domain, index, seed, frame_size, num_frames)
    if wording == "paraphrase":
        row.update(paraphrase_row(row, seed, split, index, phrasings))
    # the spec as a JSON string: its attributes differ per domain, and datasets needs one schema for every split
    return json.dumps({**row, "spec": json.dumps(row["spec"])}) + "\n"


def _corpus_row_star(root: Path, task: tuple[Any, ...]) -> str:
    return _corpus_row(root, *task)


def _write_sequence(root: Path, split: str, domain: str, index: int, seed: int, frame_size: int,
                    num_frames: int | None = None) -> dict[str, Any]:
    spec, frames = generate(domain, sequence_seed(seed, domain, split, index), frame_size, split, num_frames)
    sid = f"{domain}-{index:05d}"
    images = [Image.fromarray(f) for f in frames]
    frame_names = []
    for k, im in enumerate(images):
        rel = f"frames/{sid}_{k:02d}.png"
        im.save(root / split / rel, compress_level=1)
        frame_names.append(rel)
    frames_to_grid(images, *grid_shape(len(images))).save(root / split / f"{sid}.png", compress_level=1)
    return {"file_name": f"{sid}.png", "id": sid, "prompt": spec.prompt, "domain": domain,
            "captions": spec.captions, "num_frames": spec.num_frames, "frames_file_names": frame_names,
            "spec": spec.to_dict()}


def paraphrase_row(row: dict[str, Any], seed: int, split: str, index: int, phrasings: int) -> dict[str, Any]:
    """The paraphrased text of a corpus row: ``prompt`` (the first of ``prompts``), ``template`` ids,
    reworded ``captions``; from the test pool in ``test-paraphrase``, else from the train pool."""
    pool = "test" if split == "test-paraphrase" else "train"
    rng = np.random.default_rng(stable_hash("phrasing", seed, row["domain"], split, index))
    drawn = [phrase_prompt(row["domain"], row["spec"]["attributes"], pool, rng) for _ in range(phrasings)]
    return {"prompt": drawn[0][0], "prompts": [p for p, _ in drawn], "template": drawn[0][1],
            "captions": phrase_captions(row["spec"]["captions"], pool, rng, row["domain"], row["spec"]["attributes"])}


def load_split(root: str | Path, split: str) -> list[dict[str, Any]]:
    """The metadata rows of `split`, with absolute ``grid_path`` and ``frame_paths`` added."""
    check_split(split)
    root = Path(root)
    path = root / split / "metadata.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write the corpus first with procseq.data.dataset.make_corpus.")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = loads(line, f"line {number}")
                if isinstance(row.get("spec"), str):
                    row["spec"] = loads(row["spec"], f"the spec of line {number}")
                row["grid_path"] = str(inside(root, Path(split) / row["file_name"]))
                if "frames_file_names" in row:
                    row["frame_paths"] = [str(inside(root / split, p)) for p in row["frames_file_names"]]
                else:  # corpora written before v2
                    row["frame_paths"] = [str(inside(root, p)) for p in row["frames"]]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path} line {number} is not a valid corpus record ({err}); "
                                 "rebuild the corpus with procseq data make.") from err
            rows.append(row)
    return rows


def load_truth(record: dict[str, Any]) -> list[Image.Image]:
    """A corpus record's true frames (RGB), from the ``frame_paths`` :func:`load_split` adds."""
    out = []
    for path in record["frame_paths"]:
        with Image.open(path) as im:
            out.append(im.convert("RGB"))
    return out

def inside(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refused (ValueError) if `relative` is absolute or climbs out with ``..``:
    corpus metadata names files, and reading them must not reach anywhere else. (A lexical check, cheap
    for 100,000 names; symlinks placed inside the corpus folder itself are trusted.)"""
    if not isinstance(relative, (str, Path)):
        raise TypeError(f"a file name must be a string, got {relative!r}")
    name = str(relative).replace("\\", "/")
    if not name or name.startswith("/") or ".." in name.split("/") or "\0" in name:
        raise ValueError(f"the file name {name!r} points outside the corpus folder {root}")
    return root / relative


class GridDataset(torch.utils.data.Dataset):
    """Grid images of one split as tensors in [-1, 1] with their text.

    Each item: ``grid`` (`torch.Tensor` of shape `(3, rows * S, cols * S)`), ``prompt``,
    ``captions`` (list of str), ``domain``, ``num_frames``.

    Args:
        phrasings: items per sequence, one per stored phrasing (``prompts`` of a paraphrased corpus),
            up to this many; 1 uses each row's ``prompt``.
        domain_prefix: put the domain phrase in front of every prompt
            (:func:`procseq.domain_prompt.with_domain`), as the pipeline does for a model trained so.
        step_count_prefix: with `domain_prefix`, the phrase also names the sequence's number of steps.
    """

    def __init__(self, root: str | Path, split: str, domains: list[str] | None = None, phrasings: int = 1,
                 domain_prefix: bool = False, step_count_prefix: bool = False) -> None:
        rows = load_split(root, split)
        if domains is not None:
            unknown = set(domains) - set(REGISTRY)
            if unknown:
                raise ValueError(f"Unknown domains {sorted(unknown)}; known domains: {', '.join(sorted(REGISTRY))}.")
            rows = [r for r in rows if r["domain"] in domains]
        if phrasings < 1:
            raise ValueError(f"phrasings={phrasings} must be >= 1.")
        if phrasings > 1:
            rows = [{**r, "prompt": p} for r in rows for p in (r.get("prompts") or [r["prompt"]])[:phrasings]]
        if step_count_prefix and not domain_prefix:
            raise ValueError("step_count_prefix is part of the domain phrase: set domain_prefix too.")
        if domain_prefix:
            rows = [{**r, "prompt": with_domain(r["prompt"], r["domain"],
                                                int(r["num_frames"]) if step_count_prefix else None)} for r in rows]
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def prompts(self) -> list[str]:
        """The prompt of every item, without loading images (a latent cache refreshes its text from it)."""
        return [r["prompt"] for r in self.rows]

    @property
    def num_frames_list(self) -> list[int]:
        """Frame count of every item, without loading images (for bucketing batches)."""
        return [int(r["num_frames"]) for r in self.rows]

    @property
    def domains(self) -> list[str]:
        """Domain of every item."""
        return [r["domain"] for r in self.rows]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        with Image.open(row["grid_path"]) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
        grid = torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0
        return {"grid": grid, "prompt": row["prompt"], "captions": list(row["captions"]),
                "domain": row["domain"], "num_frames": int(row["num_frames"])}


def draw_montage(rows: list[tuple[str, list[Image.Image | np.ndarray]]], out_path: str | Path,
                 scale: int = 2) -> Path:
    """One PNG with one labelled row of frames per entry of `rows` (``(label, frames)``)."""
    if not rows:
        raise ValueError("draw_montage needs at least one row.")
    first = rows[0][1][0]
    size = first.width if isinstance(first, Image.Image) else first.shape[1]
    cell, label_w, gap = size * scale, 110, 4
    width = label_w + max(len(f) for _, f in rows) * (cell + gap)
    img = Image.new("RGB", (width, len(rows) * (cell + gap) + gap), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    for r, (label, frames) in enumerate(rows):
        y = gap + r * (cell + gap)
        draw.text((6, y + cell // 2 - 6), label, fill=(0, 0, 0), font=font)
        for k, f in enumerate(frames):
            im = f if isinstance(f, Image.Image) else Image.fromarray(f)
            img.paste(im.convert("RGB").resize((cell, cell), Image.NEAREST), (label_w + k * (cell + gap), y))
    out = Path(out_path)
    with atomic_file(out) as tmp:
        img.save(tmp, format=out.suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG")
    return out


def montage(out_path: str | Path, frame_size: int = 32, seed: int = 0, scale: int = 2) -> Path:
    """One PNG with one ground-truth sequence per domain, each row labelled with the domain name."""
    check_frame_size(frame_size)
    return draw_montage([(name, generate(name, seed, frame_size, "train")[1]) for name in DOMAIN_PLAN],
                        out_path, scale)


__all__ = ["LENGTH_MODES", "WORDINGS", "GridDataset", "paraphrase_row", "check_length_mode", "corpus_counts", "sequence_length", "draw_montage", "load_split", "load_truth", "make_corpus", "montage", "sequence_seed"]
