"""Issue 17's speed table: every setting timed interleaved in one process (a shared machine's load hits all alike).

    OMP_NUM_THREADS=1 python experiments/speed_bench.py --runs 10            # in-process sampling settings
    python experiments/speed_bench.py --cli 5                                # fresh processes: wall and CPU seconds
    python experiments/speed_bench.py --wait-policy 6                        # 1 vs 2 threads, OpenMP spin vs sleep

Settings (9 frames, procseq-tiny, true CFG 2, seed per run):

- ``before``: the sampler before issue 17 (20 Euler steps, the two CFG branches as two forwards);
- ``batched``: both branches in one batched forward, 20 steps;
- ``batched, N steps``: plus the default step count (procseq.json);
- ``... compiled``: plus ``torch.compile`` of the transformer (``--compile``);
- ``stock FluxPipeline`` vs ``ProcessPipeline`` doing the same work (two forwards, 20 steps, 96x96, 32 tokens).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = "a red house with a yellow sun"


def sampling_table(runs: int, compile_model: bool, threads: int) -> None:
    import torch
    from diffusers import FluxPipeline

    import procseq.pipelines.text_to_sequence as t2s
    from procseq.models.loading import EMBEDDED_DIR
    from procseq.pipelines.loading import load_pipeline
    from procseq.layouts.sampling import denoise

    pipe = load_pipeline(None, device="cpu", threads=threads)
    pipe.set_progress_bar_config(disable=True)
    stock = FluxPipeline.from_pretrained(EMBEDDED_DIR)
    stock.set_progress_bar_config(disable=True)
    steps = pipe.defaults.num_inference_steps
    eager = pipe.transformer
    compiled = torch.compile(eager, dynamic=False) if compile_model else None

    def ours(batch_cfg: bool, n: int, model: torch.nn.Module) -> None:
        t2s.denoise = functools.partial(denoise, batch_cfg=batch_cfg)
        pipe.transformer = model
        try:
            pipe(PROMPT, domain="painting", frames=9, num_inference_steps=n, true_cfg_scale=2.0,
                 generator=torch.Generator().manual_seed(0))
        finally:
            t2s.denoise, pipe.transformer = denoise, eager

    def stock_run() -> None:
        stock(PROMPT, negative_prompt="", true_cfg_scale=2.0, height=96, width=96, num_inference_steps=20,
              max_sequence_length=pipe.defaults.max_sequence_length, generator=torch.Generator().manual_seed(0))

    settings = {
        "before: 20 steps, two CFG forwards": lambda: ours(False, 20, eager),
        "batched CFG, 20 steps": lambda: ours(True, 20, eager),
        f"batched CFG, {steps} steps (default)": lambda: ours(True, steps, eager),
    }
    if compiled is not None:
        settings[f"batched CFG, {steps} steps, torch.compile"] = lambda: ours(True, steps, compiled)
    settings["stock FluxPipeline (two forwards, 20 steps)"] = stock_run
    settings["ProcessPipeline, same work"] = lambda: ours(False, 20, eager)
    t = time.perf_counter()
    for fn in settings.values():  # warm-up (and compilation)
        fn()
    print(f"warm-up {time.perf_counter() - t:.1f} s; threads {torch.get_num_threads()}; "
          f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(runs):
        for name, fn in settings.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in times.items()}
    first = next(iter(med.values()))
    print("| setting | median s | min s | speed vs before |\n|---|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {m:.3f} | {min(times[name]):.3f} | {first / m:.2f}x |")
    s, o = med["stock FluxPipeline (two forwards, 20 steps)"], med["ProcessPipeline, same work"]
    print(f"\nProcessPipeline / stock FluxPipeline, same work: {o / s:.3f}")


def cli_table(runs: int, out: Path) -> None:
    """Fresh processes, wall and CPU seconds (user + system of the child): import torch, stock diffusers' imports
    (the floor any Flux pipeline pays), a rejected bad argument, a whole `procseq generate`."""
    import resource

    procseq = str(Path(sys.executable).with_name("procseq"))
    commands = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python -c 'from diffusers import FluxPipeline' (stock floor)": [sys.executable, "-c",
                                                                         "from diffusers import FluxPipeline"],
        "procseq --help": [procseq, "--help"],
        "procseq generate ... --domain opera (rejected)": [procseq, "generate", "a red house", "--domain", "opera",
                                                            "--out", str(out / "bad")],
        "procseq generate (9 frames, defaults)": [procseq, "generate", "a red house with a yellow sun", "--out",
                                                  str(out / "ok"), "--overwrite"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    rss: list[float] = []
    for _ in range(runs):
        for name, cmd in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            res = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
            times[name].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if name.endswith("defaults)"):
                rss.append(int(res.stderr.strip().splitlines()[-1]) / 1024)
    print(f"load {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| fresh process | median wall s | min wall s | median CPU s | min CPU s |\n|---|---|---|---|---|")
    for name, v in times.items():
        print(f"| {name} | {statistics.median(v):.2f} | {min(v):.2f} | {statistics.median(cpu[name]):.2f} | "
              f"{min(cpu[name]):.2f} |")
    print(f"\npeak RSS of `procseq generate`: {statistics.median(rss):.0f} MB (median of {len(rss)})")


def threads_once(runs: int, label: str) -> str:
    """1 vs all-core threads, interleaved, in this process (its OpenMP wait policy was fixed when torch loaded)."""
    import torch

    from procseq.machine import available_cores
    from procseq.pipelines.loading import load_pipeline

    pipe = load_pipeline(None, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    counts = sorted({1, available_cores()})
    times: dict[int, list[float]] = {n: [] for n in counts}
    for i in range(runs + 1):
        for n in counts:
            torch.set_num_threads(n)
            t = time.perf_counter()
            pipe(PROMPT, domain="painting", frames=9, generator=torch.Generator().manual_seed(0))
            if i:
                times[n].append(time.perf_counter() - t)
    med = {n: statistics.median(v) for n, v in times.items()}
    cells = " | ".join(f"{med[n]:.3f}" for n in counts)
    return f"| {label} | {cells} | {med[counts[0]] / med[counts[-1]]:.2f}x |"


def wait_policy_table(runs: int) -> None:
    """:func:`threads_once` in fresh processes: OpenMP's default (spin, then sleep) and passive waiting.

    torch is imported before procseq, so procseq's own ``OMP_WAIT_POLICY=PASSIVE`` default cannot apply to the first.
    """
    print("| OMP_WAIT_POLICY | 1 thread median s | all cores median s | all cores vs 1 thread |\n|---|---|---|---|")
    for policy in (None, "PASSIVE"):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        code = (f"import torch, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed_bench; "
                f"print(speed_bench.threads_once({runs}, {policy or 'unset (OpenMP default)'!r}))")
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        print(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-500:])


def main() -> None:
    """Parse arguments and print the table(s)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the transformer")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cli", type=int, default=0, help="time fresh CLI processes this many times instead")
    parser.add_argument("--out", type=Path, default=Path("runs/speed/cli"))
    parser.add_argument("--wait-policy", type=int, default=0, help="compare OpenMP wait policies, this many runs")
    args = parser.parse_args()
    if args.wait_policy:
        wait_policy_table(args.wait_policy)
    elif args.cli:
        cli_table(args.cli, args.out)
    else:
        sampling_table(args.runs, args.compile, args.threads)


if __name__ == "__main__":
    main()
