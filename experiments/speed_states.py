"""Issue 30's measurements, each variant run in turn in one process (CPU seconds; the load hits all alike).

    OMP_NUM_THREADS=1 python experiments/speed_states.py --rounds 3            # states, CFG batching, cost per frame

1. ProcessPipeline / stock FluxPipeline on the same work (9-frame grid, the text the model reads, no true CFG), the
   two called in turn, the ratio the median of the pairs':
   fresh without adapters, with the shipped adapters loaded but not routed (a base domain), and after a
   known-frames call (the condition LoRA loaded).
   Then the per-call bookkeeping procseq adds (finding its adapter layers, bypassing them, the unknown words).
2. ReCraft (last cell known) with true CFG: both branches in one batch vs two passes.
3. CPU seconds per frame as the sequence grows, per layout.
4. ``gelu``: FLUX's tanh GELU, an exact GELU and the sigmoid form at the 9-frame grid's feed-forward shape.
5. Repeated generation (``repeated``, not in the default parts: minutes of compilation): the default 9-frame grid
   (true CFG 2) eager, eager with the sigmoid-form GELU, compiled (``load_pipeline(compile=True)``, which uses it),
   and compiled with the tanh GELU; CPU seconds and ratios to eager in turn in one process. The first call of a
   compiled one compiles (inductor keeps its results in ``TORCHINDUCTOR_CACHE_DIR``, by default under /tmp: a later
   process compiles faster; point it at an empty folder to time a first compilation).

``--parts`` picks some of them (``states``, ``bookkeeping``, ``recraft``, ``frames``, ``gelu``, ``repeated``).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
from PIL import Image

PROMPT = "a LEGO tower of red and blue bricks on a gray baseplate"
PARTS = ["states", "bookkeeping", "recraft", "frames", "gelu", "repeated"]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, rounds: int) -> float:
    """The least CPU seconds of `rounds` calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = cpu_seconds()
        fn()
        best = min(best, cpu_seconds() - t)
    return best


def paired(fa, fb, rounds: int) -> tuple[float, float, float]:
    """`fa` and `fb` in turn, `rounds` times (after one warm-up each): the least CPU seconds of each and the median of
    the per-round ratios a / b (a load swing hits both of a pair alike)."""
    fa(), fb()
    a, b, ratios = [], [], []
    for _ in range(rounds):
        t = cpu_seconds()
        fa()
        a.append(cpu_seconds() - t)
        t = cpu_seconds()
        fb()
        b.append(cpu_seconds() - t)
        ratios.append(a[-1] / b[-1])
    return min(a), min(b), sorted(ratios)[len(ratios) // 2]


def main() -> None:
    from diffusers import FluxPipeline

    from procseq.models.loading import EMBEDDED_DIR
    from procseq.pipelines.loading import load_pipeline
    from procseq.pipelines.text_to_sequence import ProcessPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 9, 16, 32, 64])
    parser.add_argument("--parts", nargs="+", default=PARTS[:-1], choices=PARTS,
                        help="which measurements (default all but repeated)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, threads {torch.get_num_threads()}")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    bare = load_pipeline(None, adapters="none")
    adapted = load_pipeline(None)
    after_known = load_pipeline(None)
    stock = FluxPipeline.from_pretrained(EMBEDDED_DIR)
    plain = ProcessPipeline.from_pretrained(EMBEDDED_DIR, adapters="none")  # without load_pipeline's exact speed-ups
    for p in (bare, adapted, after_known, stock, plain):
        p.set_progress_bar_config(disable=True)
    last = bare(PROMPT, domain="lego", frames=9, generator=g()).frames[0][-1]
    after_known(PROMPT, domain="lego", frames=9, generator=g(), known={8: last})
    text = bare.defaults.model_prompts([PROMPT], "lego", 9)[0]
    tokens = bare.text_length([text])

    def ours(p):
        return lambda: p(PROMPT, domain="lego", frames=9, true_cfg_scale=1.0, generator=g())

    def flux():
        return stock(text, height=96, width=96, num_inference_steps=bare.defaults.num_inference_steps,
                     guidance_scale=bare.defaults.guidance_scale, max_sequence_length=tokens, generator=g())

    if "states" in args.parts:
        print("\n| state | ProcessPipeline (CPU s) | stock FluxPipeline (CPU s) | ratio (median of pairs) |\n"
              "|---|---|---|---|")
        for name, p in (("fresh, no adapters", bare), ("adapters loaded, base domain", adapted),
                        ("after a known-frames call", after_known),
                        ("fresh, no adapters, without the exact speed-ups (fast_paths)", plain)):
            a, b, ratio = paired(ours(p), flux, args.rounds)
            print(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.3f} |", flush=True)
    if "bookkeeping" in args.parts:
        bookkeeping(adapted, args.rounds)
    if "recraft" in args.parts:
        recraft(after_known, last, args.rounds)
    if "frames" in args.parts:
        per_frame(bare, args.frames)
    if "gelu" in args.parts:
        gelu(bare)
    if "repeated" in args.parts:
        repeated(bare, args.rounds)


def bookkeeping(adapted, rounds: int) -> None:
    """The per-call work procseq adds, CPU ms per call."""
    print("\n| per-call bookkeeping (shipped adapters loaded) | CPU ms |\n|---|---|")
    from procseq.adapters.routing import adapter_layers, bypassed
    from procseq.planning import Plan

    def bypass() -> None:
        with bypassed(adapted.transformer):
            pass

    plans = [Plan(PROMPT, "lego", ["a step"] * 9)]
    for name, fn in (("find the adapter layers", lambda: adapter_layers(adapted.transformer)),
                     ("take the adapters out and back (a base-domain call)", bypass),
                     ("the prompt's unknown words", lambda: adapted.note_unknown_words(plans, [PROMPT]))):
        print(f"| {name} | {timed(lambda: [fn() for _ in range(100)], rounds) * 10:.3f} |", flush=True)


def recraft(after_known, last, rounds: int) -> None:
    """ReCraft (the last cell known) with true CFG: both branches in one batch vs two passes."""
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    print("\n| ReCraft, true CFG 2 | CPU s |\n|---|---|")
    result = {}
    for batch in (False, None):
        after_known.batch_cfg = batch
        result[batch] = timed(lambda: after_known(PROMPT, domain="lego", frames=9, generator=g(),
                                                   known={8: last}), rounds)
        print(f"| {'one batch' if batch is None else 'two passes'} | {result[batch]:.3f} |", flush=True)
    print(f"speed-up {result[False] / result[None]:.2f}x")


def per_frame(bare, frame_counts: list[int]) -> None:
    """CPU seconds per frame as the sequence grows, per layout."""
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    print("\n| frames | grid (CPU s/frame) | regional | frame by frame |\n|---|---|---|---|")
    for frames in frame_counts:
        row = []
        for mode in ("grid", "regional", "frame-by-frame"):
            if mode == "grid" and frames > bare.defaults.max_frames:
                row.append("-")
                continue
            s = timed(lambda: bare(PROMPT, domain="lego", frames=frames, mode=mode, generator=g()), 1)
            row.append(f"{s / frames:.3f}")
        print(f"| {frames} | " + " | ".join(row) + " |", flush=True)


def gelu(pipe) -> None:
    """FLUX's tanh GELU against an exact GELU and the sigmoid form, at the 9-frame grid's feed-forward shape."""
    from procseq.models.fast_paths import gelu_tanh_by_sigmoid

    tokens = 2 * (9 * (pipe.defaults.frame_size // (pipe.vae_scale_factor * 2)) ** 2 + pipe.defaults.max_sequence_length)
    x = torch.randn(tokens, 4 * pipe.transformer.inner_dim)
    print(f"\n| GELU on {tuple(x.shape)} | CPU us per call |\n|---|---|")
    with torch.no_grad():
        for name, fn in (("F.gelu(approximate='tanh') (FLUX's)", lambda: torch.nn.functional.gelu(x, approximate="tanh")),
                         ("F.gelu (exact, erf)", lambda: torch.nn.functional.gelu(x)),
                         ("sigmoid form (fast_paths.gelu_tanh_by_sigmoid)", lambda: gelu_tanh_by_sigmoid(x))):
            print(f"| {name} | {timed(lambda: [fn() for _ in range(100)], 3) * 1e4:.0f} |", flush=True)


def repeated(eager, rounds: int) -> None:
    """The default grid generated again and again: eager against the sigmoid GELU and the compiled paths."""
    import numpy as np

    from procseq.models.fast_paths import sigmoid_gelu
    from procseq.pipelines.loading import load_pipeline

    fast_gelu = load_pipeline(None, adapters="none")
    sigmoid_gelu(fast_gelu.transformer)
    compiled = load_pipeline(None, adapters="none", compile=True)  # the sigmoid GELU, then torch.compile
    compiled_tanh = load_pipeline(None, adapters="none", compile=True)
    sigmoid_gelu(compiled_tanh.transformer, on=False)  # before the first call: compiled with the tanh GELU
    variants = {"eager with the sigmoid GELU": fast_gelu, "compiled (compile=True)": compiled,
                "compiled, tanh GELU": compiled_tanh}

    def run(p):
        return p(PROMPT, domain="lego", frames=9, output_type="np", generator=torch.Generator().manual_seed(0)).images

    reference = run(eager)
    print("\n| 9-frame grid, true CFG 2 | CPU s | eager / this (median of pairs) | max pixel diff | first call: CPU s, "
          "wall s | break-even (generations) |\n|---|---|---|---|---|---|")
    print(f"| eager (default) | {timed(lambda: run(eager), rounds):.3f} | 1.00x | 0 | | |", flush=True)
    for name, p in variants.items():
        cpu, wall = cpu_seconds(), time.perf_counter()
        diff = float(np.abs(run(p) - reference).max())  # (the compiled ones compile here)
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        a, b, ratio = paired(lambda: run(eager), lambda: run(p), rounds)
        even = "-" if "compiled" not in name else f"{(cpu - b) / (a - b):.0f}" if a > b else "never"
        print(f"| {name} | {b:.3f} | {ratio:.2f}x | {diff * 255:.1f}/255 | {cpu:.1f}, {wall:.1f} | {even} |", flush=True)


if __name__ == "__main__":
    main()
