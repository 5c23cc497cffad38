"""A snappy command line: bad arguments are refused before torch loads; every generating command takes the
runtime options; ``--set train.mixed_precision=no`` is the string "no"."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from procseq.cli import main
from procseq.models.loading import precheck
from procseq.training.config import RunConfig

PROBE = """
import sys
from procseq.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as e:
    code = e.code
print("TORCH_LOADED" if "torch" in sys.modules else "TORCH_NOT_LOADED", code)
"""


def probe(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    return res, time.perf_counter() - t


@pytest.mark.parametrize("args, message", [
    (("generate", "a red house", "--domain", "opera"), "Unknown domain 'opera'"),
    (("recraft", "missing.png", "--frames", "17"), "between 2 and 16"),
])
def test_bad_arguments_fail_before_torch_loads(args, message, tmp_path) -> None:
    res, _ = probe(*args, *(("--out", str(tmp_path / "o")) if args[0] != "bench" else ()))
    assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert res.stdout.split() == ["TORCH_NOT_LOADED", "2"]
    assert not (tmp_path / "o").exists()


def test_precheck_reads_only_headers() -> None:
    assert precheck(None, "clay", 9).frame_size == 32  # clay: a domain of the shipped adapter file
    with pytest.raises(ValueError, match="Unknown domain 'clay'"):
        precheck(None, "clay", 9, adapters="none")
    with pytest.raises(ValueError, match="multiple of 8"):
        precheck(None, "lego", 9, frame_size=12)
    with pytest.raises(FileNotFoundError, match="No adapter file"):
        precheck(None, "lego", 9, adapters="nope.safetensors")
    assert precheck("black-forest-labs/FLUX.1-dev", "anything", 30).frame_size == 512  # a hub id: nothing to read


def test_runtime_options_on_every_generating_command() -> None:
    for command in ("generate", "recraft", "bench", "eval", "samples"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        for option in ("--dtype", "--threads", "--cpu-offload", "--device"):
            assert option in text, (command, option)
    for command in ("generate", "recraft", "bench"):
        assert "--frame-size" in CliRunner().invoke(main, [command, "--help"]).output


def test_generate_reports_its_choices(tiny_model_dir, tmp_path) -> None:
    model = tmp_path / "no-json"
    shutil.copytree(tiny_model_dir, model)
    (model / "procseq.json").unlink()  # a plain Flux folder: MakeAnything's frame size, said out loud
    res = CliRunner().invoke(main, ["generate", "a red circle", "--domain", "painting", "--frames", "4", "--steps", "1",
                                    "--model", str(model), "--threads", "1", "--dtype", "float32",
                                    "--out", str(tmp_path / "o")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "dtype float32 (requested)" in res.stderr and "threads 1 (requested)" in res.stderr
    assert "512 px for 4 frames (no procseq.json" in res.stderr
    assert json.loads((tmp_path / "o" / "sequence.json").read_text())["settings"]["frame_size"] == 512


def test_set_mixed_precision_no(tmp_path) -> None:
    cfg = RunConfig.from_yaml("tiny", overrides=["train.mixed_precision=no"])
    assert cfg.train.mixed_precision == "no"
    (tmp_path / "c.yaml").write_text("train:\n  mixed_precision: no\n")
    assert RunConfig.from_yaml(tmp_path / "c.yaml").train.mixed_precision == "no"
