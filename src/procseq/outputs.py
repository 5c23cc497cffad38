"""Output safety: every file and folder procseq writes goes through here.

* :func:`atomic_file` / :func:`write_text_atomic` / :func:`write_json_atomic`: a file is written
  to a temporary sibling, fsynced and renamed over its final name, so a kill or a full disk leaves
  either the old file or the new one, never half of one.
* :func:`atomic_output_dir`: an output folder is built in a temporary sibling (which carries the
  :data:`MARKER` file, and while it is temporary the :data:`TEMP_RECORD` naming the process that made it)
  and renamed into place at the end. A temporary folder left by a killed run is removed by the next run
  writing the same output (:func:`remove_stale_temps`) only if it carries that record and its process is
  gone: a folder procseq did not record is never removed, whatever its name.
* :func:`check_file_target`: a file output never replaces a device, FIFO or socket (``/dev/null``).
* Files and folders get the user's umask (as ``touch``/``mkdir`` would), not the 0600/0700 of temp files.
* The overwrite rule (:func:`check_output_free`): ``--overwrite`` replaces only a folder procseq
  itself wrote (it carries :data:`MARKER`), and never one that is, holds or lies inside the current
  folder or an input of the command. Paths are compared after resolving symlinks and ``..``.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import socket
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

MARKER = ".procseq-output"
"""The file procseq writes into every output folder it creates; ``--overwrite`` needs it."""

TEMP_RECORD = ".procseq-temp"
"""The file inside every temporary output folder: which process made it, for which output (removed on rename)."""

MAX_NAME = 200
"""Longest output file or folder name accepted (file systems allow 255 bytes; temp names add a suffix)."""


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root` to disk before it is renamed into place.

    One ``os.sync()`` (all dirty pages) instead of an fsync per file: a corpus has tens of
    thousands of small files, and this runs once per output folder.
    """
    os.sync()


def _check_name(path: Path) -> None:
    if len(path.name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise ValueError(f"The output name {path.name[:40]}... is {len(path.name)} characters long; "
                         f"choose a name of at most {MAX_NAME}.")


_LIVE: set[Path] = set()  # temporary folders this process is writing now


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_temp(parent: Path, name: str, folder: bool) -> Path:
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if folder:
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: use the user's umask, like mkdir
            return tmp
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        return Path(tmp)
    except FileExistsError as err:
        raise NotADirectoryError(f"Cannot write into {parent}: a file is in the way; "
                                 "choose another output path.") from err
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise PermissionError(f"Cannot write to {parent}: {err.strerror or err}; "
                              "choose a writable output path.") from err


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`, on failure removed.

    `path` must not be a folder. Use it for any writer that takes a file name
    (``safetensors.save_file(tensors, tmp)``, ``image.save(tmp, format="PNG")``...).
    """
    path = Path(path)
    _check_name(path)
    check_file_target(path)
    tmp = _make_temp(path.parent if str(path.parent) else Path("."), path.name, folder=False)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(tmp.parent)
    except Exception as err:
        raise_disk_error(err, tmp.parent)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def check_file_target(path: str | Path, option: str = "The output") -> None:
    """Refuse a file output `path` that is a folder or any other non-regular file (a device such as
    ``/dev/null``, a FIFO, a socket): an atomic rename would replace it with a regular file."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError:
        return  # unreadable: the write reports it
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name as the output.")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{option} {path} is not a regular file (a device, FIFO or socket); procseq will not "
                         "replace it: give the name of a file.")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see :func:`atomic_file`); returns `path`."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see :func:`atomic_file`); returns `path`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def to_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN/Infinity (they are not JSON) with a ValueError that says where."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as err:
        raise ValueError(f"Refusing to write NaN or Infinity into JSON ({err}); a setting or a result is not "
                         "finite: check the numbers you passed.") from err


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write `obj` as strict JSON (no NaN/Infinity) to `path` atomically; returns `path`."""
    return write_text_atomic(path, to_json(obj, indent=indent) + "\n")


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _inside(child: Path, parent: Path) -> bool:
    """True if `child` is `parent` or lies under it (both resolved)."""
    return child == parent or parent in child.parents


def check_out_path(out: str | Path) -> Path:
    """`out` resolved, after refusing a name that is too long or a folder that is (or holds) the current folder."""
    real = _real(out)
    _check_name(real)
    if _inside(_real(Path.cwd()), real):
        raise ValueError(f"--out {out} is the current folder or holds it; procseq writes a new folder: "
                         f"choose a new name such as --out outputs/run1.")
    return real


def check_output_free(out: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse an output folder `out` that cannot be written safely (checked before any slow work starts).

    Raises FileExistsError for an existing non-empty `out` without `overwrite`, and ValueError when
    `out` is (or holds) the current folder, is a file, or, with `overwrite`, was not written by
    procseq (no :data:`MARKER`) or is, holds or lies inside one of `inputs`.
    """
    out = Path(out)
    real = check_out_path(out)
    if not os.path.lexists(real):  # the normalised path: `x/y/..` is `x` here, whether or not `x/y` exists
        return
    if not real.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out.")
    if not overwrite:
        if any(real.iterdir()):
            raise FileExistsError(f"{out} already exists and is not empty; choose another --out or pass --overwrite.")
        return
    for item in inputs:
        if item is None:
            continue
        src = _real(item)
        if _inside(src, real) or _inside(real, src):
            raise ValueError(f"--out {out} would replace the input {item}; write the output somewhere else.")
    if any(real.iterdir()) and not (real / MARKER).is_file():
        raise ValueError(f"{out} was not written by procseq (it has no {MARKER} file), so --overwrite will not "
                         f"delete it; remove it yourself or choose another --out.")


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename `tmp` onto `out`; an existing `out` is moved aside first and deleted only after the rename."""
    trash = None
    if os.path.lexists(out):
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(trash)  # onto the empty folder just made: an atomic move aside
    try:
        tmp.rename(out)
    except BaseException:
        if trash is not None:
            trash.rename(out)
        raise
    fsync_dir(out.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False,
                      inputs: Iterable[str | Path | None] = (), durable: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success it replaces `out`, on failure it is removed.

    The folder gets the :data:`MARKER` file, so a later ``--overwrite`` may replace it. The overwrite
    rule (:func:`check_output_free`) is applied with `inputs` first. `durable=False` skips the flush to
    disk before the rename (for folders inside another atomic folder, which flushes once for all).
    """
    inputs = list(inputs)
    check_output_free(out, overwrite, inputs)
    with atomic_dir(out, durable, recheck=lambda: check_output_free(out, overwrite, inputs)) as tmp:
        yield tmp


@contextmanager
def atomic_dir(out: str | Path, durable: bool = True, recheck: Callable[[], None] | None = None) -> Iterator[Path]:
    """The mechanism under :func:`atomic_output_dir`, without the overwrite rule: for folders procseq owns by
    construction (a training run's ``model/``). Yields a temporary sibling with :data:`MARKER`; on success it
    replaces `out` (the old one is moved aside, then deleted), on failure it is removed."""
    out = _real(out)  # `x/..`, symlinks: operate on the folder the user actually means
    remove_stale_temps(out.parent, out.name)  # a killed earlier run of this output: its recorded leftovers
    tmp = _make_temp(out.parent, out.name, folder=True)
    _LIVE.add(tmp)
    try:
        record_temp(tmp, out.name)
        (tmp / MARKER).write_text("written by procseq; `--overwrite` may replace this folder\n")
        yield tmp
        if recheck is not None:
            recheck()  # `out` may have appeared while we worked
        (tmp / TEMP_RECORD).unlink(missing_ok=True)  # from here on it is the output, not a temporary folder
        if durable:
            fsync_tree(tmp)
        _replace_dir(tmp, out)
    except Exception as err:
        raise_disk_error(err, tmp)
        raise
    finally:
        _LIVE.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def record_temp(tmp: Path, name: str) -> None:
    """Write :data:`TEMP_RECORD` into the temporary folder `tmp` of the output `name`: host and process id."""
    (tmp / TEMP_RECORD).write_text(to_json({"output": name, "host": socket.gethostname(), "pid": os.getpid()}) + "\n")


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def stale_temp(path: Path) -> bool:
    """True if `path` is a temporary folder procseq made (it holds :data:`TEMP_RECORD` naming its output) whose
    process, on this host, no longer runs; a folder without the record, or a symlink, is never stale."""
    from procseq.jsonio import loads

    record = path / TEMP_RECORD
    if path.is_symlink() or not path.is_dir() or record.is_symlink() or not record.is_file():
        return False
    try:
        info = loads(record.read_bytes()[:4096], str(record))
    except (OSError, ValueError):
        return False
    pid, name = info.get("pid"), info.get("output")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(name, str):
        return False
    if not path.name.startswith(f".{name}.tmp-") or info.get("host") != socket.gethostname():
        return False
    if pid == os.getpid():
        return path not in _LIVE
    return _process_gone(pid)


def remove_stale_temps(parent: str | Path, name: str | None = None) -> int:
    """Remove the temporary folders in `parent` (of the output `name`, or of any output) that a killed procseq run
    left (:func:`stale_temp`); returns how many. Anything else in `parent` is left alone."""
    parent = Path(parent)
    if not parent.is_dir():
        return 0
    removed = 0
    for path in parent.glob(f".{glob.escape(name)}.tmp-*" if name is not None else ".*.tmp-*"):
        if stale_temp(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def raise_disk_error(err: Exception, where: Path | None = None) -> None:
    """Re-raise `err` as an OSError when it is a full disk reported by another error type: safetensors'
    own error, or torch.save's ``RuntimeError`` (no errno at all: then the free space at `where`, checked
    before the partial file is removed, tells; under 1 MiB counts as full)."""
    disk = as_disk_error(err)
    if disk is None and where is not None and not isinstance(err, (OSError, ValueError)):
        try:
            if shutil.disk_usage(where).free < 1 << 20:
                disk = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
        except OSError:
            pass
    if disk is not None and disk is not err:
        raise disk from err


def as_disk_error(err: BaseException) -> OSError | None:
    """`err` as an OSError if it is one, or if it reports one in its text (safetensors raises its own
    ``SafetensorError("... No space left on device (os error 28)")``); None otherwise."""
    if isinstance(err, OSError):
        return err
    text = str(err)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        if f"os error {code})" in text or os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def disk_full_message(err: OSError) -> str | None:
    """One line for an out-of-space / read-only / quota error, None for any other OSError."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return f"No space left on the device{where}; free some space or write somewhere else. Nothing was replaced."
    if err.errno == errno.EROFS:
        return f"{err.filename or 'The output'} is on a read-only file system; write somewhere else."
    if err.errno == errno.ENAMETOOLONG:
        return f"A path is too long ({(err.filename or '')[:60]}...); choose a shorter output name."
    return None


__all__ = ["MARKER", "TEMP_RECORD", "as_disk_error", "atomic_dir", "atomic_file", "atomic_output_dir",
           "check_file_target", "check_out_path", "check_output_free", "disk_full_message", "fsync_dir", "fsync_tree",
           "raise_disk_error", "record_temp", "remove_stale_temps", "stale_temp", "to_json", "write_bytes_atomic",
           "write_json_atomic", "write_text_atomic"]
