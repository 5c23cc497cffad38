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
    try:
        return spec_from_dict(spec)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{folder or 'This sequence'}: its 'spec' in sequence.json is not a valid synthetic spec "
                         f"({type(err).__name__}: {err}).") from err


def score_folder(folder: str | Path, domains: Mapping[str, Any] | None = None,
                 only: Iterable[str] | None = None) -> SequenceScore | None:
    """Score one sequence folder against the spec in its ``sequence.json``.

    Args:
        folder: a folder written by ``Sequence.save``.
        domains: optional domain name -> ``Domain`` overrides (default: the synthetic registry).
        only: score only sequences of these domain names; others return None.
    """
    seq = Sequence.load(folder)
    spec = spec_of(seq, folder)
    if only is not None and spec.domain not in set(only):
        return None
    domain = (domains or {}).get(spec.domain)
    try:
        return score_sequence(seq.frames, spec, domain=domain, name=Path(folder).name)
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{folder}: its frames do not match its spec ({type(err).__name__}: {err}).") from err


def score_folders(
    folders: str | Path | Iterable[str | Path],
    name: str = "",
    meta: Mapping[str, Any] | None = None,
    domains: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
    skip_bad: bool = False,
) -> Report:
    """Score sequence folders against their stored specs and return a :class:`Report`.

    Args:
        folders: one folder, a folder of sequence folders (or an ``evaluate`` output folder), or an
            iterable of sequence folders.
        name: the run name shown in reports (default: the folder name when one folder is given).
        meta: facts about the run stored in the report.
        domains: optional domain name -> ``Domain`` overrides (default: the synthetic registry).
        only: score only sequences of these domain names.
        skip_bad: score the readable folders and list the unreadable ones in ``meta["skipped"]``
            (folder and reason) instead of stopping at the first; an error if none is readable.
    """
    if isinstance(folders, (str, Path)):
        name = name or Path(folders).name
        paths = find_sequence_folders(folders)
    else:
        paths = [Path(p) for p in folders]
    if not paths:
        raise ValueError("No sequence folders to score; pass at least one folder written by Sequence.save.")
    scores, skipped = [], []
    for p in paths:
        try:
            score = score_folder(p, domains=domains, only=only)
        except (ValueError, FileNotFoundError) as err:
            if not skip_bad:
                raise
            skipped.append({"folder": str(p), "error": " ".join(str(err).split())})
            continue
        if score is not None:
            scores.append(score)
    if not scores:
        why = f"; {len(skipped)} unreadable, e.g. {skipped[0]['error']}" if skipped else ""
        wanted = f" of domains {', '.join(only)}" if only is not None else ""
        raise ValueError(f"No sequence folders{wanted} could be scored among {len(paths)}{why}.")
    info = dict(meta or {})
    if skipped:
        info["skipped"] = skipped
    return Report(name=name, scores=scores, meta=info)


__all__ = ["find_sequence_folders", "score_folder", "score_folders", "spec_from_dict", "spec_of"]
