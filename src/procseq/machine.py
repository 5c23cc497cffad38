"""What this machine is good at: bf16 capability, cores, load; the dtype and thread count chosen from it.

Nothing here imports torch at module level, so the command line can call :func:`prefer_passive_openmp`
before torch loads. Every choice comes with the reason it was made, which ``procseq bench`` prints.

Measured on a 2-core Intel Xeon (Sapphire Rapids class, avx512_bf16 + AMX) shared with other jobs
(docs/history/speed-issue-17.md):

- OpenMP's default busy-waiting made 2 threads 14.6x *slower* than 1 on a loaded machine; with
  ``OMP_WAIT_POLICY=PASSIVE`` 2 threads were faster than 1. procseq therefore asks for passive waiting
  (unless the user set a policy) and then uses every core it may run on.
- bf16 matmuls beat fp32 on CPUs with avx512_bf16/AMX, but at procseq-tiny's size (2.3M parameters) the
  pipeline is bound by per-op overheads and bf16 gains nothing, so small models stay in fp32; on CPUs
  without bf16 instructions bf16 is emulated and ~100x slower (measured on an AMD EPYC without them).
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LARGE_MODEL_PARAMS = 100_000_000
"""Transformers at least this large run in bf16 where the hardware has it (FLUX.1-dev: 12B)."""

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Choice:
    """A chosen setting and why it was chosen."""

    value: Any
    reason: str


@dataclass(frozen=True)
class MachineInfo:
    """The facts the choices are made from.

    Args:
        cpu: the CPU model name.
        cores: cores this process may run on.
        load: 1-minute load average (other jobs' demand for the cores).
        cpu_bf16: the CPU has native bf16 matmul instructions (avx512_bf16 or AMX-BF16).
        cpu_amx: the CPU has AMX tiles (much faster bf16 matmuls).
        cuda: the CUDA device name, if any.
        cuda_bf16: that device supports bf16.
    """

    cpu: str
    cores: int
    load: float
    cpu_bf16: bool
    cpu_amx: bool
    cuda: str | None = None
    cuda_bf16: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def cpu_flags() -> tuple[str, set[str]]:
    """The CPU model name and its feature flags (from ``/proc/cpuinfo``; empty where it does not exist)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def available_memory(meminfo: str | Path = "/proc/meminfo") -> int:
    """Bytes that new allocations can take now: ``MemAvailable`` (free pages plus the page cache the kernel can
    drop), not ``MemFree``, which a busy page cache keeps near zero; free pages from ``sysconf`` where there is
    no ``/proc/meminfo``, else 8 GiB."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def detect(with_cuda: bool = True) -> MachineInfo:
    """Probe this machine (cheap: CPU flags, affinity, load average; CUDA only when torch is importable)."""
    name, flags = cpu_flags()
    cuda, cuda_bf16 = None, False
    if with_cuda:
        import torch

        if torch.cuda.is_available():
            cuda, cuda_bf16 = torch.cuda.get_device_name(), torch.cuda.is_bf16_supported()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    amx = "amx_bf16" in flags
    return MachineInfo(cpu=name, cores=available_cores(), load=load, cpu_bf16=amx or "avx512_bf16" in flags,
                       cpu_amx=amx, cuda=cuda, cuda_bf16=cuda_bf16)


def prefer_passive_openmp() -> None:
    """Ask OpenMP to sleep instead of spin while it waits (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose.

    Takes effect only if called before torch is imported. On a machine shared with other jobs, spinning
    threads made 2-thread forwards 14.6x slower than 1 thread (BENCHMARKS.md).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def choose_dtype(requested: str, params: int | None, device: str, info: MachineInfo) -> Choice:
    """The weights dtype: `requested` unless it is ``"auto"``, then the faster one for this model on this machine.

    ``params`` is the transformer's parameter count (None: unknown, treated as FLUX.1-sized, a hub id).
    """
    if requested not in DTYPE_NAMES:
        raise ValueError(f"Unknown dtype {requested!r}; use one of {', '.join(DTYPE_NAMES)}.")
    if requested != "auto":
        return Choice(requested, "requested")
    large = params is None or params >= LARGE_MODEL_PARAMS
    size = "unknown size" if params is None else f"{params / 1e6:.1f}M transformer parameters"
    if device.startswith("cuda"):
        if not large:
            return Choice("float32", f"{size}: small enough that fp32 costs nothing on the GPU")
        if info.cuda_bf16:
            return Choice("bfloat16", f"{size} on {info.cuda} (bf16 supported)")
        return Choice("float16", f"{size} on {info.cuda} (no bf16 support)")
    if not info.cpu_bf16:
        return Choice("float32", f"{info.cpu} has no avx512_bf16/AMX: bf16 would be emulated (~100x slower)")
    if not large:
        return Choice("float32", f"{size}: below {LARGE_MODEL_PARAMS / 1e6:.0f}M per-op overheads dominate and bf16 "
                                 "measured no faster on this CPU class")
    unit = "AMX" if info.cpu_amx else "avx512_bf16"
    return Choice("bfloat16", f"{size} on a CPU with {unit}: bf16 matmuls are several times faster than fp32")


def choose_threads(requested: int | None, info: MachineInfo) -> Choice:
    """Intra-op threads: `requested` (or ``OMP_NUM_THREADS``) if given, else every available core."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}.")
        return Choice(requested, "requested")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return Choice(int(env), "OMP_NUM_THREADS")
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return Choice(info.cores, f"{info.cores} available cores (load {info.load:.1f}; OMP_WAIT_POLICY={policy}, "
                              "so threads sleep rather than spin when other jobs need the cores)")


def apply_threads(choice: Choice) -> None:
    """Set torch's intra-op thread count."""
    import torch

    torch.set_num_threads(int(choice.value))


__all__ = ["Choice", "DTYPE_NAMES", "LARGE_MODEL_PARAMS", "MachineInfo", "apply_threads", "available_cores",
           "available_memory",
           "choose_dtype", "choose_threads", "cpu_flags", "detect", "prefer_passive_openmp"]
