"""Memory plans (from config files, on the meta device) against measured CPU peaks; the FLUX.1-dev presets."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from procseq.cli import main
from procseq.models.memory import LiveBytes, plan_generation, plan_sequence
from procseq.training.config import RunConfig, presets
from procseq.training.memory import optimizer_bytes, parse_shape, plan_training
from procseq.training.memory_check import SIZES, check

FLUX_PRESETS = {"flux-makeanything": "adapter", "flux-processmaker": "adapter", "flux-recraft": "known-frames",
                "flux-regional": "regional", "flux-frame-by-frame": "frame-by-frame"}


def test_plan_is_within_15_percent_of_the_measured_peak() -> None:
    r = check("xs", "adapter", True, frames=4, frame_size=256)  # a fresh process measures its peak RSS
    assert abs(r["error"]) < 0.15, f"plan {r['plan']} B, measured {r['measured']} B"


@pytest.mark.slow
@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("kind", ["adapter", "known-frames"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_plan_is_within_15_percent_of_the_measured_peak_for_each_size(size, kind, checkpointing) -> None:
    r = check(size, kind, checkpointing)
    assert abs(r["error"]) < 0.15, f"plan {r['plan']} B, measured {r['measured']} B"


def test_live_bytes_counts_what_is_alive() -> None:
    mode = LiveBytes()
    with mode:
        a = torch.ones(1000)  # 4,000 bytes
        b = a * 2
        del b
        c = torch.ones(500)
    assert mode.peak == 8000 and mode.live == 6000
    del a, c
    assert mode.live == 0


def test_flux_presets_load_with_the_papers_settings() -> None:
    assert set(FLUX_PRESETS) <= set(presets())
    for name in FLUX_PRESETS:
        cfg = RunConfig.from_yaml(name)
        assert cfg.model.path == "black-forest-labs/FLUX.1-dev" and cfg.model.dtype == "bfloat16"
        assert cfg.train.gradient_checkpointing and cfg.optim.name == "came" and cfg.optim.lr == 1e-4
        section = {"adapter": cfg.adapter, "known-frames": cfg.known_frames, "regional": cfg.regional,
                   "frame-by-frame": cfg.frame_by_frame}[FLUX_PRESETS[name]]
        assert section.rank == 64
    assert RunConfig.from_yaml("flux-processmaker").adapter.alignment.enabled


@pytest.mark.slow
def test_flux_dev_plan_needs_no_download_and_checkpointing_makes_it_fit_48_gb() -> None:
    cfg = RunConfig.from_yaml("flux-recraft")
    plan = plan_training(cfg, "known-frames", 9, 336)
    assert plan.rows["base weights"] == pytest.approx(23.8e9, rel=0.01)  # 11.9 B parameters in bf16
    assert plan.fits(48) and not plan.fits(24)
    cfg.train.gradient_checkpointing = False
    assert plan_training(cfg, "known-frames", 9, 336).peak > plan.peak + 10e9


def test_sharding_divides_the_weights_and_optimizer_state(tiny_model_dir) -> None:
    cfg = RunConfig.from_dict({"model": {"path": str(tiny_model_dir)}, "train": {"batch_size": 1, "shard": "fsdp"},
                               "optim": {"name": "adamw"}})
    one, four = plan_training(cfg, "base", 4, 16), plan_training(cfg, "base", 4, 16, processes=4)
    assert four.rows["optimizer state (adamw)"] == one.rows["optimizer state (adamw)"] // 4
    assert four.peak < one.peak


def test_optimizer_state_sizes() -> None:
    p = torch.nn.Parameter(torch.zeros(64, 32))
    assert optimizer_bytes([p], "adamw") == 2 * 64 * 32 * 4
    assert optimizer_bytes([p], "came") == (64 * 32 + 2 * (64 + 32)) * 4  # one moment + factored rows/columns
    assert optimizer_bytes([p], "adamw8bit") < optimizer_bytes([p], "adamw") / 3


def test_generation_plan_offload_and_known_frames(tiny_model_dir) -> None:
    full = plan_generation(str(tiny_model_dir), 64, 16, torch.float32)
    offload = plan_generation(str(tiny_model_dir), 64, 16, torch.float32, cpu_offload=True)
    assert offload.peak < full.peak
    known = plan_sequence(str(tiny_model_dir), 4, 16, known=1, dtype="float32")
    assert "known-frame K/V cache" in known.to_dict()["gb"] or any("K/V" in n for n in known.notes)


def test_cli_plans_memory_without_loading_weights(tiny_model_dir, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["train", "adapter", "adapters", "--plan-memory", "--plan-shape", "4x16",
                               "--set", f"model.path={tiny_model_dir}"])
    assert res.exit_code == 0, res.output
    assert "peak per GPU" in res.output and "optimizer state" in res.output
    res = runner.invoke(main, ["generate", "a red house", "-m", str(tiny_model_dir), "--frames", "4", "--plan-memory",
                               "--cpu-offload", "--out", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    assert "model CPU offload" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(main, ["train", "adapter", "adapters", "--plan-memory", "--plan-shape", "4x15"])
    assert res.exit_code != 0 and "multiple of 16" in res.output


def test_parse_shape() -> None:
    assert parse_shape("9x336") == (9, 336)
    with pytest.raises(ValueError, match="FRAMESxPX"):
        parse_shape("336")


def test_config_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="model.dtype"):
        RunConfig.from_dict({"model": {"dtype": "int8"}})
    with pytest.raises(ValueError, match="train.shard"):
        RunConfig.from_dict({"train": {"shard": "zero3"}})
    with pytest.raises(ValueError, match="grad_accum"):
        RunConfig.from_dict({"train": {"shard": "fsdp", "grad_accum": 2}})
    with pytest.raises(ValueError, match="optim.name"):
        RunConfig.from_dict({"optim": {"name": "sgd"}})
