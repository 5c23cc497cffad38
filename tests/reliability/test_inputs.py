"""Issue 23, as properties (hypothesis) and focused tests: step counts, JSON shapes, batch lines and Markdown are
refused with a ValueError or accepted in range; temporary folders are removed only when procseq recorded them;
file outputs never replace devices or FIFOs; outputs get the user's umask; the endpoint is bounded in time."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procseq.batch import ITEM_KEYS, parse_line
from procseq.jsonio import MAX_DEPTH, loads
from procseq.limits import MAX_DENOISE_STEPS, MAX_PLAN_STEPS, MAX_SCALE
from procseq.outputs import (
    TEMP_RECORD,
    atomic_output_dir,
    check_file_target,
    record_temp,
    remove_stale_temps,
    write_json_atomic,
)
from procseq.conditioning.plan import Plan
from procseq.planning.planner import instruction_steps
from procseq.tutorial import markdown_text, render_markdown

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(-(10**30), 10**30) | st.integers(-5, 300), sign=st.sampled_from(["", "-", "+"]),
       word=st.sampled_from(["steps", "step", "-step", " steps"]))
def test_instruction_counts_are_in_range_or_refused(n: int, sign: str, word: str) -> None:
    text = f"build a blue lego tower in {sign}{abs(n)}{word}"
    start = time.process_time()
    try:
        count = instruction_steps(text)
    except ValueError as err:
        assert "256" in str(err) or "whole number" in str(err)
    else:
        assert count is None or 1 <= count <= MAX_PLAN_STEPS
        assert count is None or (sign != "-" and count == abs(n))
    assert time.process_time() - start < 0.5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON, depth=st.integers(0, 3 * MAX_DEPTH))
def test_any_json_shape_is_a_value_or_one_value_error(value, depth: int) -> None:
    text = "[" * depth + json.dumps(value) + "]" * depth
    try:
        obj = loads(text, "x.json", expect=None)
    except ValueError as err:
        assert "x.json" in str(err)
        return
    assert depth <= MAX_DEPTH  # the value itself may add levels
    try:
        Plan.from_dict(obj)
    except ValueError:
        pass  # every misshapen plan is a ValueError, never a TypeError/AttributeError


@settings(max_examples=300, deadline=None)
@given(line=st.dictionaries(st.sampled_from(sorted(ITEM_KEYS)), JSON, max_size=6),
       prompt=st.text(max_size=12) | st.none())
def test_any_batch_line_is_an_item_in_range_or_a_value_error(line: dict, prompt: str | None) -> None:
    if prompt is not None:
        line["prompt"] = prompt
    text = json.dumps(line)  # lone surrogates go through as \ud800 escapes
    try:
        item = parse_line(text, 1, {"domain": "painting", "frames": 9, "seed": 0, "mode": "grid"})
    except ValueError:
        return
    s = item.settings
    assert 1 <= s["frames"] <= 64 and (s.get("steps") is None or 1 <= s["steps"] <= MAX_DENOISE_STEPS)
    for key in ("guidance", "true_cfg_scale"):
        assert s.get(key) is None or (math.isfinite(s[key]) and 0 <= s[key] <= MAX_SCALE)
    assert all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in (s.get("adapter_mix") or {}).values())
    assert item.name.lower() != "batch.json" and not item.name.startswith(".")
    json.dumps(s).encode("utf-8")
    s["prompt"].encode("utf-8")  # no lone surrogate reaches the pipeline or a file


@settings(max_examples=300, deadline=None)
@given(title=st.text(max_size=40), captions=st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_markdown_of_any_text_is_inert_and_one_line_per_caption(title: str, captions: list[str]) -> None:
    md = render_markdown(title, captions, [f"frame_{i:02d}.png" for i in range(len(captions))], "a note")
    lines = [ln for ln in md.splitlines() if ln.strip()]
    assert "<" not in md
    assert len(lines) == 2 + 3 * len(captions)  # title, note, then heading, caption, image per step
    assert sum(ln.startswith("#") for ln in lines) == 1 + len(captions)
    assert not re.search(r"(?<!\\)\]\((?!frame_\d\d\.png\))", md)  # the only links are the frames
    for caption in captions:
        text = markdown_text(caption)
        assert "\n" not in text and "\r" not in text


def test_recorded_temp_folders_only_are_removed(tmp_path) -> None:
    mine = tmp_path / ".out.tmp-draft"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "thesis.tex").write_text("months")
    forged = tmp_path / ".out.tmp-forged"
    forged.mkdir()
    (forged / TEMP_RECORD).write_text(json.dumps({"output": "other", "host": os.uname().nodename, "pid": os.getpid()}))
    alive = tmp_path / ".out.tmp-alive"
    alive.mkdir()
    (alive / TEMP_RECORD).write_text(json.dumps({"output": "out", "host": os.uname().nodename, "pid": 1}))
    killed = tmp_path / ".out.tmp-killed"
    killed.mkdir()
    record_temp(killed, "out")  # this process, not holding it: as a killed run leaves it
    link = tmp_path / ".out.tmp-link"
    link.symlink_to(killed)
    with atomic_output_dir(tmp_path / "out") as tmp:
        assert (tmp / TEMP_RECORD).is_file()  # recorded while it is temporary
        assert remove_stale_temps(tmp_path) == 0  # a folder this process is writing is never stale
        (tmp / "a.txt").write_text("a")
    assert not killed.exists() and mine.is_dir() and forged.is_dir() and alive.is_dir() and link.is_symlink()
    assert not (tmp_path / "out" / TEMP_RECORD).exists() and (tmp_path / "out" / "a.txt").is_file()


def test_file_outputs_never_replace_devices_or_fifos(tmp_path) -> None:
    fifo, null = tmp_path / "fifo", tmp_path / "null"
    os.mkfifo(fifo)
    targets = [fifo]
    try:  # a private copy of /dev/null: a regression replaces this node, never the machine's /dev/null
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets.append(null)
    except OSError:
        pass
    for target in targets:
        with pytest.raises(ValueError, match="not a regular file"):
            write_json_atomic(target, {"a": 1})
        with pytest.raises(ValueError, match="not a regular file"):
            check_file_target(target)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and all(stat.S_ISCHR(os.stat(t).st_mode) for t in targets[1:])
    with pytest.raises(IsADirectoryError):
        check_file_target(tmp_path)


def test_outputs_get_the_users_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            write_json_atomic(tmp / "sequence.json", {"a": 1})
        write_json_atomic(tmp_path / "plan.json", {"a": 1})
        assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o755
        assert stat.S_IMODE(os.stat(tmp_path / "out" / "sequence.json").st_mode) == 0o644
        assert stat.S_IMODE(os.stat(tmp_path / "plan.json").st_mode) == 0o644
        os.umask(0o077)
        write_json_atomic(tmp_path / "private.json", {"a": 1})
        assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600
    finally:
        os.umask(old)


def test_the_endpoint_deadline_bounds_the_whole_request_and_reading_is_linear() -> None:
    from procseq.endpoint import EndpointError, json_objects
    from procseq.planning.llm import endpoint_planner
    from tests.reliability.hostile_inputs import endpoint_url

    planner = endpoint_planner(endpoint_url() + "/b/trickle/v1", timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="within 1 s"):
        planner("a red house", "painting", 4)
    assert time.monotonic() - start < 5
    start = time.process_time()
    for text in ('{"captions": ["a", ' * 16_000, '{"a": "' * 50_000, "{" + "x" * 300_000, '{"a": 1} ' * 30_000):
        try:
            json_objects(text)
        except EndpointError:
            pass
    assert time.process_time() - start < 5  # the quadratic reader took 59 s on the first one
    assert endpoint_planner(endpoint_url() + "/b/good/v1")("a red house", "painting", 3).captions == \
        ["step 0", "step 1", "step 2"]


@pytest.mark.slow
def test_continue_runs_an_adapter_domain_the_model_ships(tmp_path) -> None:
    """``procseq continue --domain clay`` on the shipped procseq-tiny: its clay adapter is loaded (it was refused)."""
    from click.testing import CliRunner
    from PIL import Image

    from procseq.cli import main

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["continue", str(tmp_path / "a.png"), "--prompt", "a clay cup", "--domain",
                                       "clay", "--frames", "4", "--steps", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "sequence.json").read_text())["domain"] == "clay"
