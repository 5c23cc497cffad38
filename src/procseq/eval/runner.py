"""Run a generator over dataset records, save every sequence with its spec, score, write the report.

``generate_fn(prompt, domain, num_frames, seed) -> list[PIL.Image]`` is all a model must provide;
the baselines in :mod:`procseq.eval.baselines` go through the same path.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence as SequenceABC
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from procseq.eval.report import Report
from procseq.eval.scorer import score_folders
from procseq.outputs import atomic_output_dir
from procseq.sequence import Sequence

GenerateFn = Callable[[str, str, int, int], "list[Image.Image] | Sequence"]
"""``generate_fn(prompt, domain, num_frames, seed)`` -> frames (or a :class:`Sequence` with captions)."""

FramesFn = Callable[[Mapping[str, Any], int], "list[Image.Image] | Sequence"]
"""``frames_fn(record, seed)`` -> frames: the general form behind :func:`evaluate`."""


def record_seed(record: Mapping[str, Any], base_seed: int = 0) -> int:
    """A seed fixed by the record's content (domain, spec seed, prompt), not by its position in a list."""
    spec = record.get("spec") or {}
    key = f"{record['domain']}|{spec.get('seed', '')}|{spec.get('split', '')}|{record['prompt']}"
    return (zlib.crc32(key.encode()) + int(base_seed)) % (2**31)


def per_domain(records: SequenceABC[Mapping[str, Any]], n: int | None,
               domains: SequenceABC[str] | None = None) -> list[Any]:
    """The first `n` records of each domain, in order (all with ``n=None``), only of `domains` when given."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        if domains and r["domain"] not in domains:
            continue
        if n is None or seen.get(r["domain"], 0) < n:
            seen[r["domain"]] = seen.get(r["domain"], 0) + 1
            out.append(r)
    return out


def record_id(index: int, record: Mapping[str, Any]) -> str:
    """Folder name of a record's sequence: its ``id`` (``load_split`` rows have one), else ``<index:04d>-<domain>``."""
    raw = str(record.get("id") or f"{index:04d}-{record['domain']}")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw).lstrip(".") or f"{index:04d}"


def _as_image(frame: Any) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    if isinstance(frame, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(frame.astype(np.uint8)[..., :3]))
    raise ValueError(f"A generator must return PIL images or uint8 arrays, got {type(frame).__name__}.")


def _to_sequence(out: Any, record: Mapping[str, Any], num_frames: int, seed: int) -> Sequence:
    if isinstance(out, Sequence):
        frames, captions = [_as_image(f) for f in out.frames], list(out.captions)
    else:
        frames = [_as_image(f) for f in out]
        truth = list(record.get("captions") or [])
        captions = truth if len(truth) == len(frames) else [""] * len(frames)
    if len(frames) != num_frames:
        raise ValueError(
            f"The generator returned {len(frames)} frames for a {num_frames}-step "
            f"{record['domain']!r} record ({record['prompt']!r}); return exactly num_frames frames."
        )
    return Sequence(frames=frames, captions=captions, prompt=str(record["prompt"]),
                    domain=str(record["domain"]), meta={"seed": seed})


def _check_records(records: SequenceABC[Mapping[str, Any]]) -> None:
    for i, r in enumerate(records):
        missing = [k for k in ("prompt", "domain", "spec") if k not in r]
        if missing:
            raise ValueError(
                f"Record {i} lacks {missing}; pass records from procseq.data.dataset.load_split "
                "(each with prompt, domain, num_frames and spec)."
            )


def evaluate_records(
    frames_fn: FramesFn,
    records: SequenceABC[Mapping[str, Any]],
    out_dir: str | Path,
    n: int | None = None,
    progress: bool = True,
    name: str = "",
    base_seed: int = 0,
    resume: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> Report:
    """Like :func:`evaluate`, with ``frames_fn(record, seed)`` seeing the whole record (baselines use it)."""
    records = list(records)[: n if n is not None else None]
    if not records:
        raise ValueError("No records to evaluate; check the split name and n (n must be >= 1).")
    _check_records(records)
    out = Path(out_dir)
    seq_root = out / "sequences"
    seq_root.mkdir(parents=True, exist_ok=True)
    for stale in ("report.md", "report.json"):  # a report from an earlier run must not outlive a failed one
        (out / stale).unlink(missing_ok=True)
    name = name or out.name
    ids = [record_id(i, r) for i, r in enumerate(records)]
    if len(set(ids)) != len(ids):  # e.g. records of several splits share ids: fall back to positions
        ids = [f"{i:04d}-{sid}" for i, sid in enumerate(ids)]
    folders = []
    for record, sid in zip(tqdm(records, desc=f"eval {name}", disable=not progress), ids):
        folder = seq_root / sid
        folders.append(folder)
        if resume and (folder / "sequence.json").is_file():
            continue
        seed = record_seed(record, base_seed)
        num_frames = int(record.get("num_frames") or record["spec"]["num_frames"])
        seq = _to_sequence(frames_fn(record, seed), record, num_frames, seed)
        with atomic_output_dir(folder, overwrite=True, durable=False) as tmp:
            seq.save(tmp, extra={"spec": dict(record["spec"]), "run": name})
    report = score_folders(folders, name=name, meta={"n": len(records), "base_seed": base_seed, **(meta or {})})
    report.save(out)
    return report


def evaluate(
    generate_fn: GenerateFn,
    records: SequenceABC[Mapping[str, Any]],
    out_dir: str | Path,
    n: int | None = None,
    progress: bool = True,
    name: str = "",
    base_seed: int = 0,
    resume: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> Report:
    """Generate one sequence per record, save it with its spec, score everything, write the report.

    Writes ``out_dir/sequences/<record id>/`` (``Sequence.save`` format, the record's spec in
    ``sequence.json``; each folder appears only once complete), then ``out_dir/report.md`` and
    ``out_dir/report.json``.

    Args:
        generate_fn: ``generate_fn(prompt, domain, num_frames, seed)`` -> `num_frames` PIL images
            (or a ``Sequence``, whose captions are then kept).
        records: dataset records (``load_split``): prompt, domain, num_frames, spec.
        out_dir: output folder (created).
        n: evaluate only the first `n` records.
        progress: show a tqdm progress bar.
        name: run name in the report (default: the folder name).
        base_seed: added to every record's content-derived seed (:func:`record_seed`).
        resume: keep sequence folders that already exist instead of generating them again.
        meta: facts about the run stored in ``report.json``.
    """

    def frames_fn(record: Mapping[str, Any], seed: int) -> Any:
        num_frames = int(record.get("num_frames") or record["spec"]["num_frames"])
        return generate_fn(str(record["prompt"]), str(record["domain"]), num_frames, seed)

    return evaluate_records(frames_fn, records, out_dir, n=n, progress=progress, name=name,
                            base_seed=base_seed, resume=resume, meta=meta)


__all__ = ["FramesFn", "GenerateFn", "evaluate", "evaluate_records", "per_domain", "record_id", "record_seed"]
