"""FLUX.1-dev-shaped transformer with a few blocks and random weights: seconds and memory per block in each dtype,
extrapolated to the full model (19 double + 38 single blocks). Runs as is on a CPU or a GPU; no download.

    python experiments/flux_blocks_bench.py                         # 1 double + 1 single block, 352-px 3x3 grid
    python experiments/flux_blocks_bench.py --frame-size 512 --frames 4 --dtypes float32,bfloat16 --device cuda
    python experiments/flux_blocks_bench.py --save runs/flux-1+1    # also write the checkpoint (diffusers folder)
    python experiments/flux_blocks_bench.py --dtypes bfloat16,int8  # int8: bf16 with weight-only int8 block linears

Token counts follow procseq's grids: a 3x3 grid of 352-px frames is 1056x1056 px -> 66x66 = 4356 image tokens
(VAE 8x, 2x2 patches), plus 512 T5 tokens (FluxPipeline's default) or --text-tokens.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import procseq  # noqa: F401  (OMP_WAIT_POLICY=PASSIVE before torch loads)
import torch
from diffusers import FluxTransformer2DModel

from procseq.models.quantize import quantize_module

FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=[16, 56, 56])


def build(double: int, single: int, dtype: torch.dtype, device: str, seed: int = 0,
          int8: bool = False) -> FluxTransformer2DModel:
    """A FLUX.1-dev-shaped transformer with `double` + `single` blocks and random weights (`int8`: torchao int8 weights)."""
    torch.manual_seed(seed)
    config = FLUX_DEV | {"num_layers": double, "num_single_layers": single}
    model = FluxTransformer2DModel(**config).to(device=device, dtype=dtype).eval()
    if int8:
        quantize_module(model, "int8")
    return model


def inputs(image_tokens: int, text_tokens: int, dtype: torch.dtype, device: str) -> dict:
    """One forward's inputs (batch 1)."""
    side = int(math.isqrt(image_tokens))
    ids = torch.zeros(side * side, 3)
    ids[:, 1] = torch.arange(side).repeat_interleave(side)
    ids[:, 2] = torch.arange(side).repeat(side)
    return dict(hidden_states=torch.randn(1, side * side, 64, dtype=dtype, device=device),
                encoder_hidden_states=torch.randn(1, text_tokens, 4096, dtype=dtype, device=device),
                pooled_projections=torch.randn(1, 768, dtype=dtype, device=device),
                timestep=torch.tensor([0.5], device=device), guidance=torch.tensor([3.5], device=device),
                img_ids=ids.to(device), txt_ids=torch.zeros(text_tokens, 3, device=device), return_dict=False)


def time_forward(model: FluxTransformer2DModel, kwargs: dict, runs: int, device: str) -> float:
    """Median seconds of one forward (after one warm-up)."""
    times = []
    with torch.no_grad():
        for i in range(runs + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(**kwargs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    """Measure each dtype and print a Markdown table with the full-model extrapolation."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--frame-size", type=int, default=352)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--save", type=Path, default=None, help="write the 1+1-block checkpoint's transformer here")
    a = p.parse_args()
    cols = math.ceil(math.sqrt(a.frames))
    image_tokens = (cols * a.frame_size // 16) ** 2
    print(f"device {a.device}, threads {torch.get_num_threads()}, {image_tokens} image + {a.text_tokens} text tokens "
          f"({cols}x{cols} grid of {a.frame_size} px)")
    print("| dtype | s / double block | s / single block | GB / double block | GB / single block "
          "| full model s / forward (19+38) | full model weights GB |")
    print("|---|---|---|---|---|---|---|")
    for name in a.dtypes.split(","):
        int8 = name == "int8"
        dtype = torch.bfloat16 if int8 else getattr(torch, name)
        kwargs = inputs(image_tokens, a.text_tokens, dtype, a.device)
        rows = {}
        for double, single in ((1, 0), (0, 1), (0, 0)):  # (0, 0): embedders and the output layer only
            model = build(double, single, dtype, a.device, int8=int8)
            tensors = [*model.parameters(), *model.buffers()]
            rows[(double, single)] = (time_forward(model, kwargs, a.runs, a.device),
                                      sum(t.numel() * t.element_size() for t in tensors) / 1e9)
            if a.save is not None and (double, single) == (1, 0):
                build(1, 1, dtype, a.device).save_pretrained(a.save / name)
            del model
        base_t, base_gb = rows[(0, 0)]
        d_t, d_gb = rows[(1, 0)][0] - base_t, rows[(1, 0)][1] - base_gb
        s_t, s_gb = rows[(0, 1)][0] - base_t, rows[(0, 1)][1] - base_gb
        print(f"| {name} | {d_t:.3f} | {s_t:.3f} | {d_gb:.3f} | {s_gb:.3f} | {base_t + 19 * d_t + 38 * s_t:.1f} "
              f"| {base_gb + 19 * d_gb + 38 * s_gb:.1f} |")


if __name__ == "__main__":
    main()
