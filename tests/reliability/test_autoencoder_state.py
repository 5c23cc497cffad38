"""The autoencoder stage's state folder is written like a checkpoint: a crash after a save resumes with the
same loss curve, and a damaged state stops with a clear error instead of training on garbage."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL

from procseq.training import autoencoder as ae
from procseq.training.config import AutoencoderConfig
from tests.conftest import micro_config

CFG = AutoencoderConfig(steps=4, batch_size=2, lr=1e-3, checkpoint_every=2, log_every=1, crop=8)


def vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(**micro_config().vae)


def frames() -> torch.Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def curve(out) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]


def test_crash_after_a_save_resumes_exactly_and_damage_is_refused(tmp_path, monkeypatch) -> None:
    ae.train_autoencoder(vae(), frames(), CFG, tmp_path / "a", progress=False)
    real = ae.autoencoder_loss
    calls = {"n": 0}

    def crash_at_step_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ae, "autoencoder_loss", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        ae.train_autoencoder(vae(), frames(), CFG, tmp_path / "b", progress=False)
    monkeypatch.setattr(ae, "autoencoder_loss", real)
    assert json.loads((tmp_path / "b" / "state" / "trainer_state.json").read_text())["step"] == 2
    assert not list((tmp_path / "b").glob(".*"))  # no temporary folder left
    ae.train_autoencoder(vae(), frames(), CFG, tmp_path / "b", progress=False)
    assert curve(tmp_path / "b") == pytest.approx(curve(tmp_path / "a"), rel=1e-5, abs=1e-7)
    assert (tmp_path / "b" / "vae" / "config.json").is_file() and (tmp_path / "b" / "vae" / ".procseq-output").is_file()

    state = tmp_path / "c" / "state"
    ae.train_autoencoder(vae(), frames(), AutoencoderConfig(**{**CFG.__dict__, "steps": 2}), tmp_path / "c",
                         progress=False)
    (tmp_path / "c" / "vae" / "config.json").unlink()  # not finished: the state is what a rerun reads
    weights = state / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="state .* is unusable .*model.safetensors"):
        ae.train_autoencoder(vae(), frames(), CFG, tmp_path / "c", progress=False)
