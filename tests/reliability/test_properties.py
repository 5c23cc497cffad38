"""Property tests (hypothesis) over the inputs a hostile user controls: output paths, numbers, prompts,
corpus file names. Each property: the input is refused with a ValueError-family error, or it works, and
nothing that existed before is lost."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procseq.cli.common import check_sampling, check_text
from procseq.data.dataset import inside
from procseq.outputs import MARKER, atomic_output_dir
from procseq.training.config import RunConfig

PARTS = st.sampled_from([".", "..", "x", "p", "new", "x/..", "../p", "q/.."])


@settings(max_examples=80, deadline=None)
@given(parts=st.lists(PARTS, min_size=1, max_size=4), overwrite=st.booleans(), marked=st.booleans())
def test_output_paths_never_lose_files(parts: list[str], overwrite: bool, marked: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p" / "x").mkdir(parents=True)
        (root / "p" / "x" / "keep.txt").write_text("k")
        (root / "p" / "notes.txt").write_text("n")
        if marked:
            (root / "p" / "x" / MARKER).write_text("")
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        out = "/".join(parts)
        cwd = os.getcwd()
        os.chdir(root / "p")
        try:
            with atomic_output_dir(out, overwrite) as folder:
                (folder / "result.txt").write_text("r")
        except (ValueError, FileExistsError):
            pass
        finally:
            os.chdir(cwd)
        replaced = (root / "p" / "x").resolve() if marked and overwrite else None
        for path, data in before.items():
            if replaced is not None and replaced in path.resolve().parents:
                continue  # the marked folder may be replaced with --overwrite: that is the rule
            assert path.is_file() and path.read_bytes() == data, (out, path)
        assert not [p for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


@settings(max_examples=200, deadline=None)
@given(frames=st.integers(-10, 10**6) | st.none(), steps=st.integers(-10, 10**6) | st.none(),
       size=st.integers(-10, 10**6) | st.none(), cfg=st.floats(allow_nan=True, allow_infinity=True) | st.none())
def test_sampling_numbers_are_refused_or_in_range(frames, steps, size, cfg) -> None:
    try:
        check_sampling(frames, steps, size, true_cfg_scale=cfg)
    except ValueError:
        return
    assert frames is None or 1 <= frames <= 64
    assert steps is None or 1 <= steps <= 1000
    assert size is None or 1 <= size <= 1024
    assert cfg is None or (math.isfinite(cfg) and cfg >= 0)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(["train.max_steps", "optim.lr", "train.batch_size", "data.caption_dropout",
                            "data.domains", "train.output_dir", "train.mixed_precision"]),
       value=st.text(max_size=12) | st.integers().map(str) | st.floats().map(str))
def test_config_overrides_are_type_checked(key: str, value: str) -> None:
    try:
        cfg = RunConfig.from_yaml("tiny", overrides=[f"{key}={value}"])
    except ValueError:
        return
    assert cfg.train.max_steps >= 1 and cfg.train.batch_size >= 1 and 0 <= cfg.data.caption_dropout <= 1
    assert cfg.optim.lr > 0 and math.isfinite(cfg.optim.lr)
    assert isinstance(cfg.train.output_dir, str)


ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=ANY_TEXT)
def test_any_prompt_generates_or_is_refused(tiny_pipe, prompt: str) -> None:
    import torch

    try:
        check_text(prompt, "prompt")
    except ValueError:
        assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in prompt)
        return
    if not prompt.strip():
        with pytest.raises(ValueError, match="prompt is empty"):
            tiny_pipe(prompt, domain="painting", frames=4, num_inference_steps=1)
        return
    out = tiny_pipe(prompt, domain="painting", frames=4, num_inference_steps=1,
                    generator=torch.Generator().manual_seed(0))
    assert len(out.frames[0]) == 4


@settings(max_examples=200, deadline=None)
@given(name=st.text(st.sampled_from(list("ab./\\~\0")), max_size=12))
def test_corpus_file_names_stay_inside_the_corpus(name: str) -> None:
    root = Path("/corpus/root")
    try:
        path = inside(root, name)
    except ValueError:
        return
    normal = Path(os.path.normpath(path))
    assert normal == root or root in normal.parents, name


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "a/../../b", "..", "a\\..\\..\\b"])
def test_known_escapes_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="outside the corpus"):
        inside(Path("/corpus"), name)
