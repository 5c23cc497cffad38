"""Batch generation: ``procseq generate --prompts FILE.jsonl --out DIR``, resumable and split across processes.

Each line of the prompt file is one JSON object: ``prompt`` (required) and any of ``domain``, ``frames``,
``seed``, ``steps``, ``guidance``, ``true_cfg_scale``, ``negative_prompt``, ``adapter_mix``, ``mode`` (grid, regional,
frame-by-frame)
and ``id`` (the sub-folder name; default: the line number, ``00012``). Missing keys take the command's
options. Each item is written to its own sub-folder of DIR atomically (a temporary sibling renamed into
place), so a folder exists only when its item is finished:

- a rerun skips the finished items whose settings are unchanged, and redoes an item killed half-way
  (its temporary folder is removed) or whose line changed;
- a bad line (not JSON, no prompt, unknown key, wrong type) is reported with its line number and skipped,
  and an item the pipeline refuses (e.g. an unknown domain) is reported as failed; the others still run;
- under ``torchrun`` / ``accelerate launch`` the items to do are split across the processes with
  ``PartialState.split_between_processes`` (each item on exactly one process), and the main process
  prints the summary table and writes ``DIR/batch.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

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
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg}); write one object per line, e.g. "
                         '{"prompt": "a red lego house", "domain": "lego"}') from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object; write one object per line with at least a \"prompt\"")
    unknown = sorted(set(obj) - set(ITEM_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(ITEM_KEYS)}")
    for key, value in obj.items():
        if not isinstance(value, ITEM_KEYS[key]) or isinstance(value, bool):
            raise ValueError(f"{key} must be {' or '.join(t.__name__ for t in ITEM_KEYS[key])}, got {value!r}")
    if not str(obj.get("prompt", "")).strip():
        raise ValueError('no "prompt" (the finished artifact, e.g. "a red lego house")')
    if obj.get("mode", "grid") not in MODES:
        raise ValueError(f"mode {obj['mode']!r} is not available; use one of {', '.join(MODES)}")
    name = obj.pop("id", f"{line:05d}")
    if not _ID.match(name):
        raise ValueError(f"id {name!r} is not a folder name; use letters, digits, '_', '.', '-'")
    return BatchItem(line=line, name=name, settings={**defaults, **obj})


def read_prompt_file(path: str | Path, defaults: dict[str, Any]) -> tuple[list[BatchItem], list[tuple[int, str]]]:
    """Parse every line of `path` (blank lines ignored): the valid items and ``(line, reason)`` per bad line
    (a repeated id is bad on its second line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No prompt file {path}; write one JSON object per line, e.g. "
                                '{"prompt": "a red lego house", "domain": "lego"}.')
    items, bad, names = [], [], set()
    for n, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = parse_line(text, n, defaults)
            if item.name in names:
                raise ValueError(f"id {item.name!r} is used by an earlier line; ids must be unique")
        except ValueError as err:
            bad.append((n, str(err)))
            continue
        names.add(item.name)
        items.append(item)
    return items, bad


def is_finished(out: Path, item: BatchItem) -> bool:
    """Whether ``out/<name>`` holds this item, generated with the same settings."""
    record = out / item.name / "sequence.json"
    if not record.is_file():
        return False
    try:
        return json.loads(record.read_text()).get("batch_item") == item.settings
    except (json.JSONDecodeError, OSError):
        return False


def save_sequence_folder(result: SequenceOutput, prompt: str, domain: str, out: Path,
                         extra: dict[str, Any], gif_ms: int = 600) -> Path:
    """Write the first sequence of `result` into `out`: ``frame_XX.png``, ``grid.png``, ``sequence.gif``,
    ``sequence.json`` (with `extra`); what ``procseq generate`` writes."""
    seq = result.sequences([prompt], domain)[0]
    seq.save(out, extra=extra)
    result.grid[0].save(out / "grid.png")
    seq.frames[0].save(out / "sequence.gif", save_all=True, append_images=seq.frames[1:], duration=gif_ms, loop=0)
    return out


def generate_item(pipe: Any, item: BatchItem, out: Path, options: dict[str, Any], model: str, gif_ms: int) -> None:
    """Generate one item into ``out/<name>`` atomically (``options``: frame_size, autocast_dtype)."""
    import torch

    from procseq.cli.common import atomic_output_dir

    s = item.settings
    with atomic_output_dir(out / item.name, overwrite=True) as tmp:
        result = pipe(s["prompt"], domain=s["domain"], frames=s["frames"], num_inference_steps=s.get("steps"),
                      guidance_scale=s.get("guidance"), true_cfg_scale=s.get("true_cfg_scale"),
                      negative_prompt=s.get("negative_prompt", ""), adapter_weights=s.get("adapter_mix"),
                      mode=s.get("mode", "grid"),
                      generator=torch.Generator("cpu").manual_seed(s["seed"]), **options)
        save_sequence_folder(result, s["prompt"], s["domain"], tmp,
                             {"seed": s["seed"], "model": model, "batch_item": s}, gif_ms)


def remove_partial(out: Path) -> int:
    """Remove the temporary folders of items killed half-way; returns how many."""
    partial = [p for p in out.glob(".*.tmp-*") if p.is_dir()]
    for p in partial:
        shutil.rmtree(p, ignore_errors=True)
    return len(partial)


def run_batch(load: Callable[[], Any], items: list[BatchItem], bad_lines: list[tuple[int, str]], out: str | Path,
              options: dict[str, Any] | None = None, model: str = "procseq-tiny", gif_ms: int = 600,
              redo: bool = False, progress: bool = True) -> BatchReport:
    """Generate every unfinished item into ``out/<name>``, split across the launch's processes.

    Args:
        load: builds the pipeline (called once per process, only if there is work).
        items, bad_lines: from :func:`read_prompt_file`.
        options: extra pipeline keyword arguments for every item (``frame_size``, ``autocast_dtype``).
        redo: regenerate finished items too.
    Returns the :class:`BatchReport` (complete on the main process, which also writes ``out/batch.json``).
    """
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from procseq.distributed import process_state

    state, out, start = process_state(), Path(out), time.perf_counter()
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
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
                generate_item(pipe, item, out, options or {}, model, gif_ms)
                results.append(ItemResult(item.name, item.line, "done", time.perf_counter() - t0,
                                          process=state.process_index))
            except ValueError as err:
                results.append(ItemResult(item.name, item.line, "failed", time.perf_counter() - t0, str(err),
                                          state.process_index))
    results = gather_object(results) if state.num_processes > 1 else results
    results.sort(key=lambda r: r.line)
    report = BatchReport(results, bad_lines, time.perf_counter() - start, state.num_processes)
    if state.is_main_process:
        (out / RECORD).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
