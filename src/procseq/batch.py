"""Batch generation: ``procseq generate --prompts FILE.jsonl --out DIR``, resumable and split across processes.

Each line of the prompt file is one JSON object: ``prompt`` (required) and any of ``domain``, ``frames``,
``seed``, ``steps``, ``guidance``, ``true_cfg_scale``, ``negative_prompt``, ``adapter_mix``, ``mode`` (grid, regional,
frame-by-frame)
and ``id`` (the sub-folder name; default: the line number, ``00012``). Missing keys take the command's
options. Each item is written to its own sub-folder of DIR atomically (a temporary sibling renamed into
place), so a folder exists only when its item is finished:

- DIR is procseq's: a new or empty folder, or one an earlier batch wrote (its ``batch.json`` says so,
  written atomically at the start and the end of every run). A folder holding anything else is refused, and
  nothing in DIR is ever removed but the temporary folders procseq recorded (``outputs.remove_stale_temps``);
  an item folder is replaced only if procseq wrote it (the overwrite rule of ``procseq generate --out``);
- a rerun skips the finished items whose settings are unchanged, and redoes an item killed half-way
  (its recorded temporary folder is removed) or whose line changed;
- a bad line (not JSON, nested too deep, no prompt, unknown key, wrong type, a number out of the range the
  command line accepts (:func:`procseq.limits.check_settings`), a bad ``adapter_mix``, text that is not
  Unicode, a reserved ``id`` such as ``batch.json``) is reported with its line number and skipped, and an
  item the pipeline refuses (e.g. an unknown domain) is reported as failed; the others still run;
- under ``torchrun`` / ``accelerate launch`` the items to do are split across the processes with
  ``PartialState.split_between_processes`` (each item on exactly one process), and the main process
  prints the summary table and writes ``DIR/batch.json``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from procseq.jsonio import MAX_BYTES, loads, read_json
from procseq.limits import check_mix, check_settings, max_frames
from procseq.outputs import as_disk_error, check_out_path, remove_stale_temps, write_json_atomic
from procseq.sequence import MODES

if TYPE_CHECKING:  # diffusers loads only when a pipeline does
    from procseq.pipelines.output import SequenceOutput

#: Keys a prompt-file line may hold, with their JSON types.
ITEM_KEYS: dict[str, tuple[type, ...]] = {
    "prompt": (str,), "domain": (str,), "frames": (int,), "seed": (int,), "steps": (int,),
    "guidance": (int, float), "true_cfg_scale": (int, float), "negative_prompt": (str,),
    "adapter_mix": (dict,), "mode": (str,), "id": (str,),
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
RECORD = "batch.json"
RESERVED = {RECORD}
"""Names an item ``id`` may not take (compared case-insensitively, for case-insensitive file systems)."""
WRITTEN_BY = "procseq generate --prompts"
"""The ``written_by`` field of ``batch.json``: what makes DIR a batch folder procseq may resume."""


@dataclass
class BatchItem:
    """One valid line of a prompt file: its line number, sub-folder name and generation settings."""

    line: int
    name: str
    settings: dict[str, Any]


@dataclass
class ItemResult:
    """What happened to one item: ``done``, ``skipped`` (finished by an earlier run) or ``failed``."""

    name: str
    line: int
    status: str
    seconds: float = 0.0
    message: str = ""
    process: int = 0


@dataclass
class BatchReport:
    """The outcome of a batch run: one result per valid item, the bad lines, wall time, processes."""

    results: list[ItemResult]
    bad_lines: list[tuple[int, str]]
    seconds: float
    processes: int
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {s: sum(r.status == s for r in self.results) for s in ("done", "skipped", "failed")}
        self.counts["bad lines"] = len(self.bad_lines)

    @property
    def items_per_minute(self) -> float:
        """Items generated in this run per minute of wall time."""
        return 60.0 * self.counts["done"] / self.seconds if self.seconds > 0 else 0.0

    def to_markdown(self, max_rows: int = 50) -> str:
        """The summary table: one row per failed or bad item (up to `max_rows`), then the totals."""
        rows = ["| item | line | status | seconds | message |", "|---|---|---|---|---|"]
        problems = [r for r in self.results if r.status == "failed"]
        rows += [f"| {r.name} | {r.line} | failed | {r.seconds:.2f} | {r.message} |" for r in problems[:max_rows]]
        rows += [f"| - | {n} | bad line | - | {msg} |" for n, msg in self.bad_lines[:max_rows]]
        totals = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        rows.append(f"| **total** | | {totals} | {self.seconds:.1f} | {self.items_per_minute:.1f} items/min on "
                    f"{self.processes} process(es) |")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what ``DIR/batch.json`` holds)."""
        return {"counts": self.counts, "seconds": round(self.seconds, 3), "processes": self.processes,
                "items_per_minute": round(self.items_per_minute, 2), "bad_lines": self.bad_lines,
                "results": [asdict(r) for r in self.results]}


def parse_line(text: str, line: int, defaults: dict[str, Any]) -> BatchItem:
    """One prompt-file line -> :class:`BatchItem` (settings = `defaults` overridden by the line); raises
    ``ValueError`` saying what is wrong with the line."""
    try:
        obj = loads(text, "the line", expect=None)
    except ValueError as err:
        raise ValueError(f"not JSON or not usable ({err}); write one object per line, e.g. "
                         '{"prompt": "a red lego house", "domain": "lego"}') from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object; write one object per line with at least a \"prompt\"")
    unknown = sorted(set(obj) - set(ITEM_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(ITEM_KEYS)}")
    for key, value in obj.items():
        if not isinstance(value, ITEM_KEYS[key]) or isinstance(value, bool):
            kinds = " or ".join(t.__name__ for t in ITEM_KEYS[key])
            raise ValueError(f"{key} must be {kinds}, got {str(value)[:60]!r}")
    if not str(obj.get("prompt", "")).strip():
        raise ValueError('no "prompt" (the finished artifact, e.g. "a red lego house")')
    if obj.get("mode", "grid") not in MODES:
        raise ValueError(f"mode {str(obj['mode'])[:40]!r} is not available; use one of {', '.join(MODES)}")
    name = obj.pop("id", f"{line:05d}")
    if not _ID.match(name):
        raise ValueError(f"id {name[:40]!r} is not a folder name; use letters, digits, '_', '.', '-'")
    if name.lower() in RESERVED:
        raise ValueError(f"id {name!r} is reserved (the batch's own record); choose another id")
    settings = {**defaults, **obj}
    check_settings("", frames=settings.get("frames"), steps=settings.get("steps"), seed=settings.get("seed"),
                   max_frames=max_frames(settings.get("mode")), guidance=settings.get("guidance"),
                   true_cfg_scale=settings.get("true_cfg_scale"))
    check_mix(settings.get("adapter_mix"))
    return BatchItem(line=line, name=name, settings=settings)


def read_prompt_file(path: str | Path, defaults: dict[str, Any]) -> tuple[list[BatchItem], list[tuple[int, str]]]:
    """Parse every line of `path` (blank lines ignored): the valid items and ``(line, reason)`` per bad line
    (a repeated id is bad on its second line; a line that is not UTF-8 is bad)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No prompt file {path}; write one JSON object per line, e.g. "
                                '{"prompt": "a red lego house", "domain": "lego"}.')
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"--prompts {path} is not a regular file (a folder, FIFO or device); give a JSONL file.")
    if os.stat(path).st_size > MAX_BYTES:
        raise ValueError(f"--prompts {path} is over {MAX_BYTES} bytes; split it into smaller files.")
    items, bad, names = [], [], set()
    for n, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((n, "not UTF-8 text; save the prompt file as UTF-8"))
            continue
        if not text.strip():
            continue
        try:
            item = parse_line(text, n, defaults)
            if item.name.lower() in names:
                raise ValueError(f"id {item.name!r} is used by an earlier line; ids must be unique")
        except ValueError as err:
            bad.append((n, str(err)))
            continue
        names.add(item.name.lower())
        items.append(item)
    return items, bad


def is_finished(out: Path, item: BatchItem) -> bool:
    """Whether ``out/<name>`` holds this item, generated with the same settings."""
    record = out / item.name / "sequence.json"
    if not record.is_file():
        return False
    try:
        return read_json(record).get("batch_item") == item.settings
    except (ValueError, OSError):
        return False


def owned_batch(out: str | Path) -> bool:
    """Whether `out` is a batch folder procseq wrote: its ``batch.json`` is a regular file whose ``written_by`` is
    :data:`WRITTEN_BY` (an empty or missing folder is procseq's to take, too)."""
    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return True
    record = out / RECORD
    if record.is_symlink() or not record.is_file():
        return False
    try:
        return read_json(record).get("written_by") == WRITTEN_BY
    except (ValueError, OSError):
        return False


def check_batch_out(out: str | Path) -> None:
    """Refuse a batch ``--out`` that procseq may not write into: the current folder (or one holding it), a file, or
    a folder holding anything that is not an earlier batch's (the overwrite rule of ``procseq generate --out``)."""
    real = check_out_path(out)
    if os.path.lexists(real) and not real.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out.")
    if not owned_batch(real):
        raise ValueError(f"{out} holds files that an earlier `procseq generate --prompts` did not write (no {RECORD} "
                         f"of procseq's); procseq will not write into it: choose a new or empty --out.")


def save_sequence_folder(result: SequenceOutput, prompt: str, domain: str, out: Path,
                         extra: dict[str, Any], gif_ms: int = 600, frame_scale: int = 1) -> Path:
    """Write the first sequence of `result` into `out`: ``frame_XX.png``, ``grid.png``, ``sequence.gif``,
    ``sequence.json`` (with `extra`) and the readable ``sequence.png``; what every generating command writes
    (:func:`procseq.sheet.write_sequence_folder`)."""
    from procseq.sheet import write_sequence_folder

    seq = result.sequences([prompt], domain)[0]
    return write_sequence_folder(seq, out, result.grid[0], extra, gif_ms, frame_scale)


def generate_item(pipe: Any, item: BatchItem, out: Path, options: dict[str, Any], model: str, gif_ms: int,
                  frame_scale: int = 1) -> None:
    """Generate one item into ``out/<name>`` atomically (``options``: frame_size, autocast_dtype)."""
    import torch

    from procseq.outputs import atomic_output_dir

    s = item.settings
    with atomic_output_dir(out / item.name, overwrite=True) as tmp:
        result = pipe(s["prompt"], domain=s["domain"], frames=s["frames"], num_inference_steps=s.get("steps"),
                      guidance_scale=s.get("guidance"), true_cfg_scale=s.get("true_cfg_scale"),
                      negative_prompt=s.get("negative_prompt", ""), adapter_weights=s.get("adapter_mix"),
                      mode=s.get("mode", "grid"),
                      generator=torch.Generator("cpu").manual_seed(s["seed"]), **options)
        save_sequence_folder(result, s["prompt"], s["domain"], tmp,
                             {"seed": s["seed"], "model": model, "batch_item": s}, gif_ms, frame_scale)


def remove_partial(out: Path) -> int:
    """Remove the temporary folders of items killed half-way (only those procseq recorded); returns how many."""
    return remove_stale_temps(out)


def write_record(out: Path, record: dict[str, Any]) -> None:
    """Write ``out/batch.json`` atomically, marked as procseq's (:data:`WRITTEN_BY`)."""
    write_json_atomic(out / RECORD, {"written_by": WRITTEN_BY, **record})


def _item_error(err: Exception) -> str:
    """One line for an item that failed; a full disk or read-only target is raised instead (every item would fail)."""
    disk = as_disk_error(err)
    if disk is not None and disk.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
        raise disk from err
    text = " ".join(str(err).split())
    return text if isinstance(err, ValueError) and text else f"{type(err).__name__}: {text}"[:300]


def run_batch(load: Callable[[], Any], items: list[BatchItem], bad_lines: list[tuple[int, str]], out: str | Path,
              options: dict[str, Any] | None = None, model: str = "procseq-tiny", gif_ms: int = 600,
              redo: bool = False, progress: bool = True, frame_scale: int = 1) -> BatchReport:
    """Generate every unfinished item into ``out/<name>``, split across the launch's processes.

    Args:
        load: builds the pipeline (called once per process, only if there is work).
        items, bad_lines: from :func:`read_prompt_file`.
        options: extra pipeline keyword arguments for every item (``frame_size``, ``autocast_dtype``).
        redo: regenerate finished items too.
        frame_scale: enlargement of the written frames (:func:`procseq.sheet.write_sequence_folder`).
    Returns the :class:`BatchReport` (complete on the main process, which also writes ``out/batch.json``).
    """
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from procseq.distributed import process_state

    state, out, start = process_state(), Path(out), time.perf_counter()
    if state.is_main_process:
        check_batch_out(out)
        out.mkdir(parents=True, exist_ok=True)
        write_record(out, {"status": "running"})  # from now on a rerun knows the folder as this batch's
        remove_partial(out)
    state.wait_for_everyone()
    finished = {it.name for it in items if not redo and is_finished(out, it)}
    todo = [it for it in items if it.name not in finished]
    state.wait_for_everyone()  # everyone has listed the work before anyone writes
    results = [ItemResult(it.name, it.line, "skipped") for it in items if it.name in finished] \
        if state.is_main_process else []
    with state.split_between_processes(todo) as mine:
        pipe = load() if mine else None
        if pipe is not None and hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        desc = "generate" if state.num_processes == 1 else f"generate [process {state.process_index}]"
        for item in tqdm(mine, desc=desc, unit="item", disable=not progress, position=state.process_index):
            t0 = time.perf_counter()
            try:
                generate_item(pipe, item, out, options or {}, model, gif_ms, frame_scale)
                results.append(ItemResult(item.name, item.line, "done", time.perf_counter() - t0,
                                          process=state.process_index))
            except Exception as err:  # one item's failure never aborts the batch (a full disk does)
                results.append(ItemResult(item.name, item.line, "failed", time.perf_counter() - t0,
                                          _item_error(err), state.process_index))
    results = gather_object(results) if state.num_processes > 1 else results
    results.sort(key=lambda r: r.line)
    report = BatchReport(results, bad_lines, time.perf_counter() - start, state.num_processes)
    if state.is_main_process:
        write_record(out, {"status": "finished", **report.to_dict()})
    return report
