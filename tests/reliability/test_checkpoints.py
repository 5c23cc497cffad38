"""Issue #10 items 3 and 7: a damaged newest checkpoint falls back to the intact previous one with the loss
curve unchanged; a non-finite loss stops before anything is saved or deleted; a full disk during a save
keeps the earlier checkpoints; two trainings cannot share an output folder."""

from __future__ import annotations

import errno
import fcntl
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from procseq.training import checkpoints as ck
from tests.training.test_trainer import losses, make_trainer


@pytest.fixture(scope="module")
def straight(tiny_model_dir, tmp_path_factory):
    """The reference loss curve: 6 uninterrupted steps (checkpoints every 2)."""
    out = tmp_path_factory.mktemp("straight")
    make_trainer(tiny_model_dir, out, 6).train(progress=False)
    return losses(out)


def names(out) -> list[str]:
    return [c.name for c in ck.checkpoints(out)]


def damage_truncate(folder) -> None:
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def damage_empty(folder) -> None:
    for f in folder.iterdir():
        f.unlink()


def damage_nan_weights(folder) -> None:
    """Valid file, valid manifest, NaN weights: only the finite-weights check catches it."""
    f = folder / "model.safetensors"
    tensors = load_file(f)
    tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, f)
    ck.write_manifest(folder)


@pytest.mark.parametrize("damage", [damage_truncate, damage_empty, damage_nan_weights])
def test_a_damaged_newest_checkpoint_falls_back_and_the_curve_is_unchanged(tiny_model_dir, tmp_path, straight,
                                                                           damage) -> None:
    out = tmp_path / "run"
    make_trainer(tiny_model_dir, out, 4).train(progress=False)  # checkpoints 2 and 4
    damage(ck.checkpoint_path(out, 4))
    with pytest.warns(UserWarning, match="step_00000004"):
        make_trainer(tiny_model_dir, out, 6).train(progress=False)  # resumes from 2, redoes 3..6
    assert losses(out) == pytest.approx(straight, rel=1e-5, abs=1e-7)
    assert names(out) == ["step_00000004", "step_00000006"]
    assert all(ck.verify_checkpoint(c) is None for c in ck.checkpoints(out))


def test_what_a_kill_during_a_save_leaves_is_ignored_and_cleaned(tiny_model_dir, tmp_path, straight) -> None:
    """In-process stand-in for the kill -9 tests below (slow): a half-written temporary checkpoint folder."""
    out = tmp_path / "run"
    make_trainer(tiny_model_dir, out, 4).train(progress=False)
    half = out / "checkpoints" / ".step_00000006.tmp"
    half.mkdir()
    (out / "checkpoints" / ".step_00000008.tmp").mkdir()  # a step this run never reaches
    (half / "model.safetensors").write_bytes(b"\0" * 10)
    with open(out / "log.jsonl", "a") as log:
        log.write('{"step": 5, "loss": 0.3')  # a torn log line
    make_trainer(tiny_model_dir, out, 6).train(progress=False)
    assert losses(out) == pytest.approx(straight, rel=1e-5, abs=1e-7)
    assert names(out) == ["step_00000004", "step_00000006"] and not list((out / "checkpoints").glob(".*"))


def test_no_usable_checkpoint_is_an_error_not_a_silent_restart(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    make_trainer(tiny_model_dir, out, 2).train(progress=False)
    damage_truncate(ck.checkpoint_path(out, 2))
    with pytest.raises(ValueError, match="No usable checkpoint.*step_00000002"):
        make_trainer(tiny_model_dir, out, 4).train(progress=False)
    assert names(out) == ["step_00000002"]  # kept for the user to inspect


def test_non_finite_loss_stops_before_anything_is_written_or_deleted(tiny_model_dir, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    make_trainer(tiny_model_dir, out, 4).train(progress=False)
    before = {c.name: ck.verify_checkpoint(c) for c in ck.checkpoints(out)}
    model = {p.name: p.stat().st_mtime_ns for p in (out / "model").rglob("*")}
    trainer = make_trainer(tiny_model_dir, out, 8)
    real = trainer.loss_at
    monkeypatch.setattr(trainer, "loss_at", lambda step, idx: real(step, idx) * (float("nan") if step >= 5 else 1))
    with pytest.raises(ck.NonFiniteError, match="step 6.*step_00000004 is intact|step 6.*\\(the newest checkpoint"):
        trainer.train(progress=False)
    assert {c.name: ck.verify_checkpoint(c) for c in ck.checkpoints(out)} == before == {
        "step_00000002": None, "step_00000004": None}
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "model").rglob("*")} == model  # not rewritten


def test_disk_full_during_a_save_keeps_the_earlier_checkpoints(tiny_model_dir, tmp_path, straight, monkeypatch) -> None:
    """ENOSPC is simulated (no tmpfs can be mounted here without root): the save writes half a file, then fails."""
    out = tmp_path / "run"
    trainer = make_trainer(tiny_model_dir, out, 6)
    real = trainer.accelerator.save_state

    def full_disk(path, *a, **k):
        if path.endswith("step_00000004.tmp"):
            real(path, *a, **k)
            f = next(p for p in __import__("pathlib").Path(path).iterdir() if p.suffix == ".safetensors")
            f.write_bytes(f.read_bytes()[:100])
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real(path, *a, **k)

    monkeypatch.setattr(trainer.accelerator, "save_state", full_disk)
    with pytest.raises(OSError, match="No space"):
        trainer.train(progress=False)
    assert names(out) == ["step_00000002"] and ck.verify_checkpoint(ck.checkpoint_path(out, 2)) is None
    assert not list((out / "checkpoints").glob(".*"))  # the half-written temporary folder is gone
    make_trainer(tiny_model_dir, out, 6).train(progress=False)  # space freed: resume from step 2
    assert losses(out) == pytest.approx(straight, rel=1e-5, abs=1e-7)


def test_two_trainings_cannot_share_an_output_folder(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ck.LOCK, "a+") as other:  # another process's lock (a separate open file description)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="Another training"):
            make_trainer(tiny_model_dir, out, 2).train(progress=False)
    assert not (out / "log.jsonl").exists() and not (out / "checkpoints").exists()
    make_trainer(tiny_model_dir, out, 2).train(progress=False)  # free again: it runs
    assert names(out) == ["step_00000002"]


def _worker(model_dir, out, steps: int, slow_save_s: float = 0.0):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.train_worker", str(model_dir), str(out),
                             str(steps), str(slow_save_s)], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def _kill_during_a_save(proc, out, nth: int) -> None:
    """SIGKILL `proc` while it writes its `nth` checkpoint (after the files, before the rename)."""
    seen = 0
    for line in proc.stdout:
        if line.startswith("saving"):
            seen += 1
            if seen == nth:
                proc.kill()
                break
    proc.wait()


@pytest.mark.slow  # two training processes: ~30 s on 2 busy cores, most of it importing torch and diffusers
def test_kill_9_during_a_save_resumes_with_the_same_loss_curve(tiny_model_dir, tmp_path, straight) -> None:
    out = tmp_path / "run"
    proc = _worker(tiny_model_dir, out, 6, slow_save_s=0.5)
    _kill_during_a_save(proc, out, 3)  # killed while step 3 is being saved
    assert proc.returncode == -9
    assert names(out) == ["step_00000001", "step_00000002"] and (out / "checkpoints" / ".step_00000003.tmp").is_dir()
    proc = _worker(tiny_model_dir, out, 6)
    assert proc.wait() == 0
    assert losses(out) == pytest.approx(straight, rel=1e-5, abs=1e-7)
    assert names(out) == ["step_00000005", "step_00000006"] and not list((out / "checkpoints").glob(".*"))


@pytest.mark.slow
def test_kill_9_at_random_points_resumes_with_the_same_loss_curve(tiny_model_dir, tmp_path, straight) -> None:
    import random
    import time

    rng = random.Random(0)
    out = tmp_path / "run"
    log = out / "log.jsonl"
    kills = 0
    while True:
        proc = _worker(tiny_model_dir, out, 6, slow_save_s=rng.choice([0.0, 0.1]))
        if kills < 4:  # wait for a random logged step past the resume point, then a random moment more
            target = (len(log.read_text().splitlines()) if log.is_file() else 0) + rng.randint(1, 2)
            while proc.poll() is None and (not log.is_file() or len(log.read_text().splitlines()) < target):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.kill()
                kills += 1
        if proc.wait() == 0:
            break
    assert kills >= 2
    assert losses(out) == pytest.approx(straight, rel=1e-5, abs=1e-7)


@pytest.fixture()
def small_disk(tmp_path):
    """A 1.8 MB tmpfs at tmp_path/disk (room for two micro checkpoints of ~0.7 MB, not three); skipped where
    tmpfs cannot be mounted (not root). Yields a function that grows it ("frees space")."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1800k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); test_disk_full_during_a_save_... simulates ENOSPC instead")
    try:
        yield lambda size: subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk_keeps_the_checkpoints_and_resume_is_exact(tiny_model_dir, tmp_path, straight,
                                                                   small_disk) -> None:
    out = tmp_path / "disk" / "run"
    with pytest.raises(OSError) as err:
        make_trainer(tiny_model_dir, out, 6).train(progress=False)  # the step-6 save runs out of space
    assert err.value.errno == errno.ENOSPC
    assert names(out) == ["step_00000002", "step_00000004"]
    assert all(ck.verify_checkpoint(c) is None for c in ck.checkpoints(out))
    assert not list((out / "checkpoints").glob(".*"))
    small_disk("64M")
    make_trainer(tiny_model_dir, out, 6).train(progress=False)
    assert losses(out) == pytest.approx(straight, rel=1e-5, abs=1e-7)


def test_a_real_full_disk_is_one_line_from_the_cli(tiny_model_dir, tmp_path, small_disk) -> None:
    from click.testing import CliRunner

    from procseq.cli import main

    (tmp_path / "disk" / "filler").write_bytes(b"\0" * (1800 * 1024 - 16 * 1024))
    res = CliRunner().invoke(main, ["generate", "a red circle", "--model", str(tiny_model_dir), "--frames", "4",
                                    "--steps", "1", "--out", str(tmp_path / "disk" / "out")])
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert res.exit_code == 1 and len(errors) == 1 and errors[0].startswith("procseq: error: No space left")
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["filler"]
