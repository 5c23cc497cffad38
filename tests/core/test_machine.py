"""Dtype and thread choice for the machine (overrides respected), and the frame size of folders without procseq.json."""

from __future__ import annotations

import pytest
import torch

from procseq.machine import (
    LARGE_MODEL_PARAMS,
    MachineInfo,
    choose_dtype,
    choose_threads,
    cpu_flags,
    detect,
    prefer_passive_openmp,
)
from procseq.models.headers import transformer_params
from procseq.models.loading import ModelDefaults
from procseq.pipelines.loading import load_pipeline

AMX = MachineInfo(cpu="Xeon", cores=2, load=0.0, cpu_bf16=True, cpu_amx=True)
PLAIN = MachineInfo(cpu="EPYC", cores=2, load=0.0, cpu_bf16=False, cpu_amx=False)
GPU = MachineInfo(cpu="x", cores=8, load=0.0, cpu_bf16=False, cpu_amx=False, cuda="H100", cuda_bf16=True)
OLD_GPU = MachineInfo(cpu="x", cores=8, load=0.0, cpu_bf16=False, cpu_amx=False, cuda="T4", cuda_bf16=False)
BIG, SMALL = 12_000_000_000, 2_300_000


@pytest.mark.parametrize("params, device, info, expected", [
    (BIG, "cpu", AMX, "bfloat16"),          # large model, native bf16
    (None, "cpu", AMX, "bfloat16"),         # unknown size (a hub id): treated as FLUX.1-sized
    (SMALL, "cpu", AMX, "float32"),         # overhead-bound: bf16 gains nothing
    (BIG, "cpu", PLAIN, "float32"),         # bf16 emulated: ~100x slower
    (BIG, "cuda", GPU, "bfloat16"),
    (BIG, "cuda", OLD_GPU, "float16"),
    (SMALL, "cuda", GPU, "float32"),
])
def test_auto_dtype(params, device, info, expected) -> None:
    choice = choose_dtype("auto", params, device, info)
    assert choice.value == expected and choice.reason


def test_requested_dtype_wins_and_bad_dtype_raises() -> None:
    assert choose_dtype("bfloat16", SMALL, "cpu", PLAIN).value == "bfloat16"
    assert choose_dtype("float32", BIG, "cuda", GPU).reason == "requested"
    with pytest.raises(ValueError, match="Unknown dtype"):
        choose_dtype("int3", SMALL, "cpu", AMX)
    assert LARGE_MODEL_PARAMS > SMALL


def test_threads(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(None, AMX).value == 2 and "2 available cores" in choose_threads(None, AMX).reason
    assert choose_threads(3, AMX).value == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads(None, AMX).value == 1 and choose_threads(None, AMX).reason == "OMP_NUM_THREADS"
    assert choose_threads(2, AMX).value == 2  # an explicit request beats the environment
    with pytest.raises(ValueError, match=">= 1"):
        choose_threads(0, AMX)


def test_passive_openmp_keeps_a_user_choice(monkeypatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    prefer_passive_openmp()
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prefer_passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_detect_and_flags() -> None:
    info = detect(with_cuda=False)
    name, flags = cpu_flags()
    assert info.cores >= 1 and info.cpu == name
    assert info.cpu_bf16 == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_load_pipeline_records_its_choices(tiny_model_dir) -> None:
    before = torch.get_num_threads()
    try:
        pipe = load_pipeline(tiny_model_dir, device="cpu", threads=1)
        assert pipe.machine_choices["threads"].value == 1 and torch.get_num_threads() == 1
        assert pipe.machine_choices["dtype"].value == "float32" and pipe.transformer.dtype == torch.float32
        assert transformer_params(tiny_model_dir) == sum(p.numel() for p in pipe.transformer.parameters())
        pipe = load_pipeline(tiny_model_dir, device="cpu", dtype="bfloat16", threads=1)
        assert pipe.transformer.dtype == torch.bfloat16 and pipe.machine_choices["dtype"].reason == "requested"
    finally:
        torch.set_num_threads(before)


def test_frame_size_without_procseq_json(tmp_path, tiny_model_dir) -> None:
    flux = ModelDefaults.from_folder(tmp_path)  # no procseq.json: MakeAnything's sizes
    assert (flux.frame_size_for(9), flux.frame_size_for(4), flux.frame_size_for(16)) == (352, 512, 256)
    assert "no procseq.json" in flux.describe_frame_size(9) and "352" in flux.describe_frame_size(9)
    own = ModelDefaults.from_folder(tiny_model_dir)
    assert own.frame_size_for(9) == 16 and "procseq.json" in own.describe_frame_size(9)


def test_compile_is_opt_in(tiny_model_dir) -> None:
    before = torch.get_num_threads()
    try:  # compiled lazily at the first forward, which this test does not run (minutes on a 2-core CPU)
        assert load_pipeline(tiny_model_dir, device="cpu", threads=1).transformer._compiled_call_impl is None
        assert load_pipeline(tiny_model_dir, device="cpu", threads=1, compile=True).transformer._compiled_call_impl
    finally:
        torch.set_num_threads(before)


def test_available_memory_reads_mem_available_not_free(tmp_path) -> None:
    from procseq.machine import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:          100000 kB\nMemAvailable:    7000000 kB\n")
    assert available_memory(meminfo) == 7000000 * 1024  # the page cache counts as available
    assert available_memory(tmp_path / "missing") > 0  # falls back to free pages
