"""Issue #10 items 1-2: `--overwrite` never deletes the current folder, its parents, an input, or a folder
procseq did not write; every output file and folder is written atomically (one helper, procseq.outputs)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from procseq.cli import main
from procseq.cli.common import ProcseqGroup
from procseq.outputs import MARKER, atomic_file, atomic_output_dir, check_output_free, write_json_atomic


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (what must survive)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("out", [".", "..", "x/..", "x/../.", "../p"])
def test_overwrite_never_deletes_the_current_folder_or_its_parents(tiny_model_dir, tmp_path, monkeypatch, out) -> None:
    p = tmp_path / "p"
    (p / "x").mkdir(parents=True)
    (p / "notes.txt").write_text("keep")
    (tmp_path / "sibling.txt").write_text("keep too")
    monkeypatch.chdir(p)
    before = tree(tmp_path)
    commands = [
        ["generate", "a red lego house", "-d", "lego", "--model", str(tiny_model_dir), "--steps", "1"],
        ["eval", "--baseline", "ground-truth", "--data", str(tmp_path)],
        ["init-tiny", out],
    ]
    for args in commands:
        res = run(*args, *([] if args[0] == "init-tiny" else ["--out", out]), "--overwrite")
        assert res.exit_code == 2, res.output
        assert "current folder" in res.output and res.output.count("\n") == 1
        assert tree(tmp_path) == before


def test_overwrite_never_deletes_an_input(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photos / "finished.png")
    (photos / "neighbour.jpg").write_bytes(b"not touched")
    (photos / MARKER).write_text("even a folder procseq wrote is refused when it holds the input")
    before = tree(tmp_path)
    res = run("recraft", "photos/finished.png", "--out", "photos", "--overwrite", "--model", str(tiny_model_dir),
              "--no-lora", "--steps", "1")
    assert res.exit_code == 2 and "would replace the input" in res.output
    gt = tmp_path / "gt"
    (gt / "sequences").mkdir(parents=True)
    (gt / "sequences" / MARKER).write_text("")
    (gt / "sequences" / "keep.txt").write_text("scored input")
    before = tree(tmp_path)
    res = run("eval", "--score", "gt", "--out", "gt/sequences", "--overwrite")
    assert res.exit_code == 2 and "would replace the input" in res.output
    res = run("eval", "--score", "gt/sequences", "--out", "gt", "--overwrite")
    assert res.exit_code == 2 and "would replace the input" in res.output
    res = run("generate", "a red circle", "--model", str(tiny_model_dir), "--out", str(tiny_model_dir), "--overwrite")
    assert res.exit_code == 2 and "would replace the input" in res.output
    assert tree(tmp_path) == before


def test_overwrite_replaces_only_folders_procseq_wrote(tiny_model_dir, tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    args = ["generate", "a red circle", "--frames", "4", "--steps", "1", "--model", str(tiny_model_dir)]
    res = run(*args, "--out", str(mine), "--overwrite")
    assert res.exit_code == 2 and "not written by procseq" in res.output
    assert (mine / "thesis.tex").read_text() == "months of work"
    out = tmp_path / "seq"
    assert run(*args, "--out", str(out)).exit_code == 0 and (out / MARKER).is_file()
    first = (out / "sequence.json").read_text()
    assert run(*args, "--seed", "9", "--out", str(out)).exit_code == 2  # exists, no --overwrite
    assert run(*args, "--seed", "9", "--out", str(out), "--overwrite").exit_code == 0
    assert (out / "sequence.json").read_text() != first and (out / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "seq"]  # no temporary or trash folders left


def test_a_file_or_a_symlinked_folder_is_judged_by_what_it_points_to(tmp_path, monkeypatch) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        check_output_free(tmp_path / "file.txt", overwrite=True)
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path, tmp_path / "link")
    with pytest.raises(ValueError, match="current folder"):
        check_output_free(tmp_path / "link", overwrite=True)
    with pytest.raises(ValueError, match="at most"):
        check_output_free(tmp_path / ("n" * 300), overwrite=False)


def test_atomic_helpers_leave_old_or_new_never_half(tmp_path, monkeypatch) -> None:
    target = tmp_path / "a.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(ValueError, match="NaN or Infinity"):
        write_json_atomic(target, {"v": float("nan")})
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text('{"v": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "x.txt").write_text("1")
    with pytest.raises(OSError), atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "x.txt").write_text("2")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (out / "x.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "out"]


def test_sigterm_and_disk_full_are_one_line_and_leave_nothing(tmp_path) -> None:
    @click.group(cls=ProcseqGroup)
    def cli() -> None:
        pass

    @cli.command()
    @click.argument("how")
    def work(how: str) -> None:
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "half.png").write_bytes(b"\x89PNG")
            if how == "term":
                os.kill(os.getpid(), signal.SIGTERM)
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "half.png"))

    previous = signal.getsignal(signal.SIGTERM)
    res = CliRunner().invoke(cli, ["work", "term"])
    assert res.exit_code == 143 and list(tmp_path.iterdir()) == [] and "stopped by signal 15" in res.stderr
    assert signal.getsignal(signal.SIGTERM) == previous
    res = CliRunner().invoke(cli, ["work", "full"])
    assert res.exit_code == 1 and "No space left" in res.output and res.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
