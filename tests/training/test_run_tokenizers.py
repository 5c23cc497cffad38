"""A from-scratch run builds its tokenizers once and reads them back on resume (the BPE trainer is not
deterministic across processes, so rebuilding them would hand resumed text encoders another vocabulary)."""

from __future__ import annotations

from procseq.models.tiny import TinyConfig
from procseq.training import run
from procseq.training.config import RunConfig
from tests.conftest import TEXTS


def test_tokenizers_are_kept_in_the_run_folder(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(run, "corpus_texts", lambda: calls.append(1) or TEXTS)
    cfg = RunConfig.from_dict({"train": {"output_dir": str(tmp_path / "run")}})
    tiny = TinyConfig(clip_vocab_size=300, t5_vocab_size=200)
    clip, t5 = run.run_tokenizers(cfg, tiny)
    assert (tmp_path / "run" / "tokenizers" / "clip").is_dir() and calls == [1]
    clip2, t52 = run.run_tokenizers(cfg, tiny)  # the resume: read back, not rebuilt
    assert calls == [1]
    assert clip2.get_vocab() == clip.get_vocab() and t52.get_vocab() == t5.get_vocab()
    for text in TEXTS + ["unseen zebra"]:
        assert clip2(text).input_ids == clip(text).input_ids and t52(text).input_ids == t5(text).input_ids
