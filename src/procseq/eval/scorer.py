"""The one scorer: any sequence folders written by ``Sequence.save`` whose ``sequence.json`` has a ``spec``.

Models and baselines all write folders and all go through :func:`score_folders`, so every number in
a comparison table comes from the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from procseq.eval.metrics import SequenceScore, score_sequence
from procseq.eval.report import Report
from procseq.sequence import Sequence


def find_sequence_folders(root: str | Path) -> list[Path]:
    """`root` itself if it is a sequence folder, else its sub-folders holding a ``sequence.json`` (sorted)."""
    root = Path(root)
    if (root / "sequence.json").is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist; pass a sequence folder or a folder of them.")
    found = sorted(p.parent for p in root.glob("*/sequence.json"))
    if not found and (root / "sequences").is_dir():
        found = sorted(p.parent for p in (root / "sequences").glob("*/sequence.json"))
    if not found:
        raise FileNotFoundError(
            f"No sequence folders under {root}: expected <folder>/sequence.json files written by "
            "Sequence.save (or an evaluate() output folder with a sequences/ sub-folder)."
        )
    return found


def spec_from_dict(d: Mapping[str, Any]) -> Any:
    """``Spec.from_dict`` of the synthetic package (imported lazily, like the domain registry)."""
    from procseq.data.synthetic import Spec

    return Spec.from_dict(dict(d))


def spec_of(sequence: Sequence, folder: str | Path = "") -> Any:
    """The synthetic ``Spec`` stored in a loaded sequence's metadata (``meta["spec"]``)."""
    spec = sequence.meta.get("spec")
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{folder or 'This sequence'} has no 'spec' in sequence.json, so it cannot be scored against "
            "ground truth; save it with Sequence.save(dir, extra={'spec': spec.to_dict()})."
        )
    return spec_from_dict(spec)


def score_folder(folder: str | Path, domains: Mapping[str, Any] | None = None) -> SequenceScore:
    """Score one sequence folder against the spec in its ``sequence.json``.

    Args:
        folder: a folder written by ``Sequence.save``.
        domains: optional domain name -> ``Domain`` overrides (default: the synthetic registry).
    """
    seq = Sequence.load(folder)
    spec = spec_of(seq, folder)
    domain = (domains or {}).get(spec.domain)
    return score_sequence(seq.frames, spec, domain=domain, name=Path(folder).name)


def score_folders(
    folders: str | Path | Iterable[str | Path],
    name: str = "",
    meta: Mapping[str, Any] | None = None,
    domains: Mapping[str, Any] | None = None,
) -> Report:
    """Score sequence folders against their stored specs and return a :class:`Report`.

    Args:
        folders: one folder, a folder of sequence folders (or an ``evaluate`` output folder), or an
            iterable of sequence folders.
        name: the run name shown in reports (default: the folder name when one folder is given).
        meta: facts about the run stored in the report.
        domains: optional domain name -> ``Domain`` overrides (default: the synthetic registry).
    """
    if isinstance(folders, (str, Path)):
        name = name or Path(folders).name
        paths = find_sequence_folders(folders)
    else:
        paths = [Path(p) for p in folders]
    if not paths:
        raise ValueError("No sequence folders to score; pass at least one folder written by Sequence.save.")
    scores = [score_folder(p, domains=domains) for p in paths]
    return Report(name=name, scores=scores, meta=dict(meta or {}))


__all__ = ["find_sequence_folders", "score_folder", "score_folders", "spec_from_dict", "spec_of"]
