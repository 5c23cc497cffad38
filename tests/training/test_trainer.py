"""The training loop: a smoke run, exact resume after a kill, checkpoint pruning, config errors."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import FluxPipeline
from torch.utils.data import Dataset

from procseq.training.config import RunConfig, presets
from procseq.training.trainer import BatchSchedule, Trainer, bucketed_batches


class RandomGrids(Dataset):
    """Fixed random 4- and 9-frame grids of 16 px frames with prompts."""

    def __init__(self, n: int = 8):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            frames = 4 if i % 2 else 9
            side = 32 if frames == 4 else 48
            self.items.append({"grid": torch.rand(3, side, side, generator=g) * 2 - 1,
                               "prompt": f"a red circle {i}", "num_frames": frames})
        self.num_frames_list = [it["num_frames"] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def make_trainer(model_dir, out, max_steps: int, optimizer: str = "came") -> Trainer:
    cfg = RunConfig.from_dict({
        "model": {"path": str(model_dir)},
        "data": {"caption_dropout": 0.5},
        "optim": {"name": optimizer, "lr": 1e-3, "warmup_steps": 2},
        "train": {"output_dir": str(out), "max_steps": max_steps, "batch_size": 2, "checkpoint_every": 2,
                  "log_every": 1, "mixed_precision": "no", "seed": 3},
    })
    pipe = FluxPipeline.from_pretrained(model_dir)
    return Trainer(cfg, pipe, RandomGrids(), lambda p, d: p.save_pretrained(d))


def losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("optimizer", ["came", "adamw"])
def test_kill_and_resume_reproduces_the_loss_curve(tiny_model_dir, tmp_path, optimizer: str) -> None:
    straight = make_trainer(tiny_model_dir, tmp_path / "a", 4, optimizer).train(progress=False)
    assert straight.step == 4 and (straight.model_dir / "model_index.json").is_file()
    make_trainer(tiny_model_dir, tmp_path / "b", 2, optimizer).train(progress=False)  # "killed" after step 2
    # a later process: fresh model from disk, resumes from the step-2 checkpoint
    make_trainer(tiny_model_dir, tmp_path / "b", 4, optimizer).train(progress=False)
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    assert len(set(a)) == 4  # the model actually changes
    ckpts = sorted((tmp_path / "b" / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step_00000002", "step_00000004"]
    # running a finished run again trains nothing and reports its last logged loss
    again = make_trainer(tiny_model_dir, tmp_path / "b", 4, optimizer).train(progress=False)
    assert again.step == 4 and again.loss == b[-1] and losses(tmp_path / "b") == b


def test_schedule_is_a_pure_function_of_seed_and_step() -> None:
    frames = [4, 9] * 10
    sched = BatchSchedule(frames, 3, seed=1)
    assert [sched(s) for s in range(7)] == [BatchSchedule(frames, 3, seed=1)(s) for s in range(7)]
    for batch in bucketed_batches(frames, 3, 1, 0):
        assert len({frames[i] for i in batch}) == 1 and len(batch) == 3
    with pytest.raises(ValueError, match="fewer sequences"):
        BatchSchedule([4, 9], 2, 0)


def test_domain_balanced_schedule() -> None:
    frames = [9] * 30 + [4] * 7  # a big 9-frame domain, a small 4-frame one
    domains = ["clay"] * 30 + ["sand_art"] * 7
    plain = bucketed_batches(frames, 3, 0, 0)
    assert sum(frames[b[0]] == 4 for b in plain) == 2 and len(plain) == 12  # follows the data: 10 + 2
    for epoch in range(3):
        balanced = bucketed_batches(frames, 3, 0, epoch, domains)
        assert bucketed_batches(frames, 3, 0, epoch, domains) == balanced  # pure function of (seed, epoch)
        assert all(len(b) == 3 and len({domains[i] for i in b}) == 1 for b in balanced)
        per_domain = [sum(domains[b[0]] == d for b in balanced) for d in ("clay", "sand_art")]
        assert per_domain == [10, 10]
        assert all(len(set(b)) == 3 for b in balanced)  # no sequence twice in a batch
    sched = BatchSchedule(frames, 3, seed=0, domains=domains)
    assert sched.per_epoch == 20 and sched(25) == bucketed_batches(frames, 3, 0, 1, domains)[5]


def test_config_errors_and_presets(tmp_path) -> None:
    with pytest.raises(ValueError, match="Unknown key"):
        RunConfig.from_dict({"train": {"max_stepz": 3}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        RunConfig.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="No config file"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")
    cfg = RunConfig.from_dict({"optim": {"lr": 0.5}})
    cfg.save_yaml(tmp_path / "c.yaml")
    assert RunConfig.from_yaml(tmp_path / "c.yaml") == cfg
    for name in presets():
        assert isinstance(RunConfig.from_yaml(name), RunConfig)


def test_lr_schedules_warm_up_hold_and_decay() -> None:
    from procseq.training.config import OptimConfig

    const = OptimConfig(lr=1.0, warmup_steps=4)
    assert [const.lr_at(s, 20) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    wsd = OptimConfig(lr=1.0, warmup_steps=2, schedule="linear", decay_steps=4, min_lr=0.2)
    curve = [wsd.lr_at(s, 10) for s in range(10)]
    assert curve[:6] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]  # warmup, then held until the last 4 steps
    assert curve[6:] == pytest.approx([0.8, 0.6, 0.4, 0.2])  # ends at min_lr on the last step
    cos = OptimConfig(lr=1.0, warmup_steps=0, schedule="cosine")  # decay_steps 0: all of the run
    assert cos.lr_at(0, 5) < 1.0 and cos.lr_at(4, 5) == pytest.approx(0.0)
    assert all(a > b for a, b in zip([cos.lr_at(s, 5) for s in range(5)], [cos.lr_at(s, 5) for s in range(1, 5)]))
    with pytest.raises(ValueError, match="optim.schedule"):
        RunConfig.from_dict({"optim": {"schedule": "step"}})
    with pytest.raises(ValueError, match="optim.decay_steps"):
        RunConfig.from_dict({"optim": {"decay_steps": -1}})
