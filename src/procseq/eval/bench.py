"""``procseq bench``: latency, peak memory and achieved TFLOP/s of a pipeline against the machine's peak."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    """FLOPs of CPU fused attention, which torch's counter does not know (QK^T and AV, as for the GPU kernels)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
"""Counted in addition to torch's own registry, so attention is part of the transformer's FLOPs on CPU too."""


@dataclass
class BenchResult:
    """Timings of `runs` generations of one sequence, peak RSS, transformer FLOP rate.

    Wall-time figures (``*_s``, ``achieved_tflops``, ``peak_tflops``) depend on what else the machine runs; the
    CPU-time figures do much less: ``median_cpu_s`` (this process's CPU seconds per generation, all threads),
    ``transformer_cpu_s_per_generation`` (the denoising loop's), and the rates per core-second, achieved and
    the matmul peak, whose ratio is the share of the machine's matmul rate the transformer reaches.
    ``matmul_share_per_core`` is that share measured run by run (the peak timed right after each generation, the
    median of the per-run ratios), so a load swing during the runs hits both sides of each ratio alike.
    """

    frames: int
    steps: int
    runs: int
    median_s: float
    min_s: float
    max_s: float
    peak_rss_mb: float
    transformer_tflop_per_generation: float
    transformer_s_per_generation: float
    achieved_tflops: float
    peak_tflops: float
    dtype: str
    threads: int = 1
    attention_share: float = 0.0
    median_cpu_s: float = 0.0
    transformer_cpu_s_per_generation: float = 0.0
    achieved_tflops_per_core: float = 0.0
    peak_tflops_per_core: float = 0.0
    matmul_share_per_core: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """A one-row Markdown table."""
        d = self.to_dict()
        head = "| " + " | ".join(d) + " |"
        return "\n".join([head, "|" + "---|" * len(d), "| " + " | ".join(
            f"{v:.4g}" if isinstance(v, float) else str(v) for v in d.values()) + " |"])


def matmul_peak_tflops(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 10,
                       clock: Callable[[], float] = time.perf_counter) -> float:
    """Measured dense matmul rate of this machine in TFLOP/s (``(4n x n) @ (n x n)``, best of `repeats`); with
    ``clock=time.process_time``, TFLOP per CPU-second (per core, summed over the threads)."""
    a, b = torch.randn(4 * n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        a @ b
        best = min(best, clock() - t)
    return 2 * 4 * n * n * n / max(best, 1e-9) / 1e12


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024


def bench(pipe: Any, prompt: str, domain: str, frames: int = 9, steps: int | None = None, runs: int = 5,
          autocast_dtype: torch.dtype | None = None, true_cfg_scale: float | None = None,
          frame_size: int | None = None) -> BenchResult:
    """Time `runs` generations (after one warm-up), count transformer FLOPs (attention included), compare with
    the matmul peak.

    `true_cfg_scale`: None = the model's default (2 for procseq-tiny: both branches in one batched pass per step).
    """
    steps = steps or pipe.defaults.num_inference_steps

    def once(seed: int) -> dict[str, Any]:
        g = torch.Generator("cpu").manual_seed(seed)
        return pipe(prompt, domain=domain, frames=frames, num_inference_steps=steps, generator=g,
                    autocast_dtype=autocast_dtype, true_cfg_scale=true_cfg_scale, frame_size=frame_size).metadata[0]

    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
        once(0)  # (also the warm-up)
    transformer_flops = flops_of_transformer(counter, pipe)  # the denoiser only, not the encoders or the VAE
    attention = flops_of_transformer(counter, pipe, ops=("attention",))
    if transformer_flops == 0:
        raise ValueError(f"No FLOPs were attributed to {type(pipe.transformer).__name__}; cannot report TFLOP/s.")
    dtype = autocast_dtype or pipe.transformer.dtype
    once(0)
    times, denoise, cpu, denoise_cpu, shares = [], [], [], [], []
    for i in range(runs):
        t, c = time.perf_counter(), time.process_time()
        meta = once(i + 1)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        denoise.append(meta["timings_s"]["denoise"])
        denoise_cpu.append(meta.get("cpu_s", {}).get("denoise", 0.0))
        if denoise_cpu[-1] > 0:  # the peak right after this run: the same load on both sides of the ratio
            peak = matmul_peak_tflops(dtype, repeats=3, clock=time.process_time)
            shares.append(transformer_flops / denoise_cpu[-1] / 1e12 / peak)
    t_den, cpu_den = statistics.median(denoise), statistics.median(denoise_cpu)
    return BenchResult(
        frames=frames, steps=steps, runs=runs, median_s=statistics.median(times), min_s=min(times),
        max_s=max(times), peak_rss_mb=peak_rss_mb(), transformer_tflop_per_generation=transformer_flops / 1e12,
        transformer_s_per_generation=t_den, achieved_tflops=transformer_flops / t_den / 1e12,
        peak_tflops=matmul_peak_tflops(dtype), dtype=str(dtype).replace("torch.", ""),
        threads=torch.get_num_threads(), attention_share=attention / transformer_flops,
        median_cpu_s=statistics.median(cpu), transformer_cpu_s_per_generation=cpu_den,
        achieved_tflops_per_core=transformer_flops / cpu_den / 1e12 if cpu_den > 0 else 0.0,
        peak_tflops_per_core=matmul_peak_tflops(dtype, clock=time.process_time),
        matmul_share_per_core=statistics.median(shares) if shares else 0.0,
    )


def flops_of_transformer(counter: FlopCounterMode, pipe: Any, ops: tuple[str, ...] | None = None) -> int:
    """FLOPs the counter attributed to the transformer module (0 if it recorded none); only ops whose name
    contains one of `ops` when given (e.g. ``("attention",)``)."""
    name = type(pipe.transformer).__name__
    for key, table in counter.get_flop_counts().items():
        if key.endswith(name) or key == name:
            return int(sum(v for op, v in table.items() if ops is None or any(o in str(op) for o in ops)))
    return 0


@dataclass
class SettingTiming:
    """Median generation time of one setting in an interleaved comparison, and its speed relative to the first."""

    setting: str
    median_s: float
    speedup: float


def compare_settings(pipe: Any, settings: dict[str, dict[str, Any]], prompt: str, domain: str, frames: int = 9,
                     runs: int = 5) -> list[SettingTiming]:
    """Time each named setting `runs` times, **interleaved** (one run of each in turn, so a shared machine's load
    hits all alike), after one warm-up each.

    A setting is pipeline keyword arguments plus an optional ``"threads"``, e.g.
    ``{"fp32, 1 thread": {"threads": 1}, "bf16 autocast, 2 threads": {"threads": 2, "autocast_dtype": torch.bfloat16}}``.
    """
    before = torch.get_num_threads()
    times: dict[str, list[float]] = {name: [] for name in settings}

    def once(kwargs: dict[str, Any], seed: int) -> float:
        kwargs = dict(kwargs)
        torch.set_num_threads(kwargs.pop("threads", before))
        g = torch.Generator("cpu").manual_seed(seed)
        t = time.perf_counter()
        pipe(prompt, domain=domain, frames=frames, generator=g, **kwargs)
        return time.perf_counter() - t

    try:
        for kwargs in settings.values():
            once(kwargs, 0)
        for i in range(runs):
            for name, kwargs in settings.items():
                times[name].append(once(kwargs, i + 1))
    finally:
        torch.set_num_threads(before)
    medians = {name: statistics.median(v) for name, v in times.items()}
    first = next(iter(medians.values()))
    return [SettingTiming(name, m, first / m) for name, m in medians.items()]


def timings_markdown(rows: list[SettingTiming]) -> str:
    """The comparison as a Markdown table."""
    lines = ["| setting | median s | speed vs first |", "|---|---|---|"]
    lines += [f"| {r.setting} | {r.median_s:.3f} | {r.speedup:.2f}x |" for r in rows]
    return "\n".join(lines)
