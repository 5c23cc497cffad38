"""Crash-safe training checkpoints and the output-folder lock.

* A checkpoint is written to a temporary folder, gets a ``manifest.json`` (size and sha256 of every
  file), is fsynced and renamed to ``checkpoints/step_XXXXXXXX``, then verified. A kill or a full
  disk at any moment leaves the previous checkpoints intact and at worst a ``.step_*.tmp`` folder,
  which the next save removes.
* Resume takes the newest checkpoint that verifies and whose weights are finite; older ones are
  pruned only after a newer one has verified.
* A non-finite loss (or non-finite weights before a save) stops training with
  :class:`NonFiniteError` before anything is written or deleted.
* :func:`output_lock` takes an exclusive ``filelock.FileLock`` on ``OUTPUT_DIR/.lock``, so two
  trainings cannot write into one folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import warnings
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch

from procseq.outputs import fsync_dir, fsync_tree, raise_disk_error, write_json_atomic

MANIFEST = "manifest.json"
STATE = "trainer_state.json"
LOCK = ".lock"


class NonFiniteError(ValueError):
    """Training produced a NaN or infinite loss or weights; nothing was saved or deleted."""


def checkpoint_path(out: Path, step: int) -> Path:
    """``out/checkpoints/step_XXXXXXXX``."""
    return Path(out) / "checkpoints" / f"step_{step:08d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> dict[str, Any]:
    """Record size and sha256 of every file under `folder` in ``folder/manifest.json``."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"files": files}
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def verify_checkpoint(folder: Path) -> str | None:
    """Why `folder` is not a usable checkpoint (None if it is): manifest, sizes, sha256 and step all checked.

    A folder written before manifests existed (no ``manifest.json``, but a ``trainer_state.json``)
    is accepted unverified, with a warning.
    """
    folder = Path(folder)
    try:
        step = json.loads((folder / STATE).read_text())["step"]
        if not isinstance(step, int) or step < 0:
            return f"{STATE} holds step {step!r}"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"no readable {STATE} ({type(err).__name__})"
    if not (folder / MANIFEST).is_file():
        warnings.warn(f"{folder} has no {MANIFEST} (written by an older procseq); using it unverified.", stacklevel=2)
        return None
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {MANIFEST} ({type(err).__name__})"
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["size"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {want['size']}"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its sha256"
    return None


def checkpoint_step(folder: Path) -> int:
    """The step recorded in a checkpoint folder."""
    return int(json.loads((Path(folder) / STATE).read_text())["step"])


def checkpoints(out: Path) -> list[Path]:
    """Every ``step_*`` checkpoint folder of a run, oldest first."""
    return sorted((Path(out) / "checkpoints").glob("step_*"))


def all_finite(params: Iterable[torch.Tensor]) -> bool:
    """True if every tensor in `params` is free of NaN and infinity (a sharded tensor: this process's shard)."""
    return all(bool(torch.isfinite(getattr(p, "_local_tensor", p)).all()) for p in params if p.is_floating_point())


def check_finite_loss(loss: float, step: int, out: Path) -> None:
    """Raise :class:`NonFiniteError` for a NaN/infinite `loss` at `step` (before it is applied)."""
    if math.isfinite(loss):
        return
    good = [c.name for c in checkpoints(out) if verify_checkpoint(c) is None]
    keep = f"the newest checkpoint ({good[-1]}) is intact" if good else "no checkpoint was written yet"
    raise NonFiniteError(f"The training loss became {loss} at step {step}; stopped before saving or deleting "
                         f"anything ({keep}). Lower optim.lr or check the data, then run the same command to "
                         "resume from the newest good checkpoint.")


def resume(load: Callable[[Path], None], out: Path, params: Callable[[], Iterable[torch.Tensor]]) -> int:
    """Load the newest usable checkpoint of `out` with ``load(folder)``; return its step (0 if none exist).

    Checkpoints that fail :func:`verify_checkpoint` or load non-finite weights are skipped with a
    warning. If checkpoints exist but none is usable this raises a ValueError rather than silently
    starting over (the weights may already hold a bad checkpoint's values).
    """
    found = checkpoints(out)
    reasons = []
    for folder in reversed(found):
        why = verify_checkpoint(folder)
        if why is None:
            load(folder)
            if all_finite(params()):
                if reasons:
                    warnings.warn(f"Resuming from {folder.name}; skipped newer unusable checkpoints: "
                                  f"{'; '.join(reasons)}.", stacklevel=2)
                return checkpoint_step(folder)
            why = "its weights hold NaN or infinity"
        reasons.append(f"{folder.name}: {why}")
    if found:
        raise ValueError(f"No usable checkpoint in {Path(out) / 'checkpoints'} ({'; '.join(reasons)}); move that "
                         "folder aside to start the run over.")
    return 0


def write_checkpoint_dir(final: Path, write: Callable[[Path], None], main_process: bool = True,
                         barrier: Callable[[], None] = lambda: None) -> Path:
    """Write a checkpoint folder `final` crash-safely: ``write(tmp)``, manifest, fsync, rename, verify.

    An existing `final` (an unusable checkpoint of the same step, or the autoencoder's single
    ``state`` folder) is moved aside and deleted only after the new one has verified. With several
    processes every one calls this (``write`` may be collective); `barrier` synchronises them and
    only the main process renames.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    if main_process:
        # temporary folders left by a kill (no other process writes here: the output folder is locked)
        for stale in [*final.parent.glob(".*.tmp"), *final.parent.glob(".*.old")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
    barrier()
    try:
        write(tmp)
        barrier()
        if main_process:
            write_manifest(tmp)
            fsync_tree(tmp)
            old = None
            if final.exists():
                old = final.with_name(f".{final.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
            tmp.rename(final)
            fsync_dir(final.parent)
            why = verify_checkpoint(final)
            if why is not None:
                raise OSError(f"The checkpoint just written to {final} does not verify ({why}); the disk may be failing.")
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        try:
            if isinstance(err, Exception):
                raise_disk_error(err, tmp.parent)  # safetensors and torch.save report a full disk in their own ways
            raise
        finally:
            if main_process:
                shutil.rmtree(tmp, ignore_errors=True)
    barrier()
    return final


def prune(out: Path, newest: Path, keep: int) -> list[Path]:
    """Delete checkpoints older than `newest` (which has verified) beyond the newest `keep`; returns them."""
    older = [c for c in checkpoints(out) if c.name < newest.name]
    doomed = older[: max(0, len(older) - (keep - 1))]
    for old in doomed:
        shutil.rmtree(old, ignore_errors=True)
    return doomed


_HELD: dict[str, Any] = {}


@contextmanager
def output_lock(out: Path, main_process: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of training folder `out` (main process only) for the ``with`` block.

    Re-entrant within one process (``run_training`` holds it around every stage, the trainer again).
    Raises ValueError when another process holds it.
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    key = os.path.realpath(out)
    if not main_process or key in _HELD:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(out / LOCK, timeout=0), out / f"{LOCK}.owner"
    try:
        lock.acquire()
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "?"
        raise ValueError(f"Another training (pid {holder or '?'}) is writing to {out}; wait for it to finish or "
                         "choose another train.output_dir (--output-dir).") from None
    owner.write_text(f"{os.getpid()}\n")
    _HELD[key] = lock
    try:
        yield
    finally:
        _HELD.pop(key, None)
        lock.release()


__all__ = ["NonFiniteError", "all_finite", "check_finite_loss", "checkpoint_path", "checkpoint_step", "checkpoints",
           "output_lock", "prune", "resume", "verify_checkpoint", "write_checkpoint_dir",
           "write_manifest"]
