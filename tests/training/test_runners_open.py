"""The three training runners open the corpus and check their base model the same way (training.run)."""

from __future__ import annotations

import pytest

from procseq.training.adapters import run_adapter_training
from procseq.training.config import RunConfig
from procseq.training.known_frames import run_known_frames_training
from procseq.training.run import run_training

RUNNERS = [run_training, run_adapter_training, run_known_frames_training]


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda f: f.__name__)
def test_a_missing_split_says_how_to_make_the_corpus(runner, tmp_path) -> None:
    cfg = RunConfig.from_dict({"model": {"path": "procseq-tiny"}, "data": {"dir": str(tmp_path / "nowhere")},
                               "train": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(FileNotFoundError, match="procseq data make --out"):
        runner(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda f: f.__name__)
def test_an_empty_split_is_an_error(runner, tmp_path) -> None:
    (tmp_path / "corpus" / "train").mkdir(parents=True)
    (tmp_path / "corpus" / "train" / "metadata.jsonl").write_text("")
    cfg = RunConfig.from_dict({"model": {"path": "procseq-tiny"}, "data": {"dir": str(tmp_path / "corpus")},
                               "train": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match="No sequences of domains"):
        runner(cfg, progress=False)


@pytest.mark.parametrize("runner", RUNNERS[1:], ids=lambda f: f.__name__)
def test_lora_runners_need_a_base_model(runner, tmp_path) -> None:
    cfg = RunConfig.from_dict({"model": {"path": ""}, "train": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match="needs a base model: set model.path"):
        runner(cfg, progress=False)
