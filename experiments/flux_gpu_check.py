"""FLUX.1-dev scale on one GPU (issue 31): a FLUX.1-dev-shaped pipeline with random weights (19 + 38 blocks, the
real T5-XXL / CLIP-L / VAE sizes, bf16) generates and trains, each figure beside its memory plan.

What it measures (JSON to --out, one line per figure to stdout):
  1. the bf16 CUBLAS_STATUS_EXECUTION_FAILED of issue 12 on procseq-tiny: base training under bf16 autocast at
     batch 128 (the failing setting), then the variants that isolate it (bf16 weights without autocast, batch 16);
  2. one 28-step 9-frame sequence at a 1008 px grid (grid, 1 known frame, regional): seconds, the ratio to the
     FLOP bound (FLOPs counted on the meta device), peak memory against `procseq generate --plan-memory`;
  3. the same grid sequence with model CPU offload;
  4. LoRA training at rank 64, a 1024 px grid (4 x 512 px), batch 1 and 2, gradient checkpointing: steps/s and
     peak memory against `procseq train --plan-memory` (asymmetric LoRA and the peft known-frames LoRA).

On a fresh GPU machine without network (torch, transformers, peft, accelerate and safetensors installed; diffusers
and came-pytorch not), carry the wheels in wheels/ beside the repository (as experiments/gpu_v2.sh does; made where
there is network: pip download diffusers==0.42.1 came-pytorch==0.1.3 --no-deps -d wheels, plus any of click,
pyyaml, pillow the machine lacks) and run from the repository root:

    pip install --no-index --no-deps --target /tmp/site wheels/*.whl      # e.g. wheels/diffusers-0.42.1-*.whl
    PYTHONPATH=/tmp/site:src python experiments/flux_gpu_check.py --out "$OUT/flux_gpu.json"

It needs about 40 GB of GPU memory and 40 GB of CPU memory (for the offload part); estimated 5 to 8 minutes on an
H100 (not yet run: give it a 600 s limit; --skip cublas,offload shortens it).
No weights are downloaded: every component is built from FLUX.1-dev's config (shipped in procseq) with random
values, and the tokenizers are procseq-tiny's. The logic runs on a CPU with a FLUX-shaped model of a few blocks:

    PYTHONPATH=src python experiments/flux_gpu_check.py --tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from procseq.models.memory import GB, component_configs, meta_component, plan_sequence, transformer_inputs

FLUX = "black-forest-labs/FLUX.1-dev"
TINY = {"num_layers": 1, "num_single_layers": 2, "attention_head_dim": 32, "num_attention_heads": 2,
        "axes_dims_rope": [8, 12, 12]}
RESULTS: dict[str, Any] = {}


def record(name: str, value: Any) -> None:
    """Keep one figure and print it."""
    RESULTS[name] = value
    print(f"{name}: {json.dumps(value)}", flush=True)


def attempt(name: str, fn: Callable[[], Any]) -> None:
    """Run one part; an exception is recorded (with its last lines) and the next part still runs."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001 (a GPU report keeps going)
        record(f"{name}.error", f"{type(err).__name__}: {err}"[:2000])
        print(traceback.format_exc()[-3000:], flush=True)


class Memory:
    """Peak allocated bytes of the block it wraps (CUDA allocator; on a CPU: not measured)."""

    def __init__(self, device: str) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> "Memory":
        if self.device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device != "cpu":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()


def flux_configs(tiny: bool) -> dict[str, dict[str, Any]]:
    """FLUX.1-dev's component configs (``tiny``: the transformer cut to a few narrow blocks, T5 to 2 layers)."""
    configs = component_configs(FLUX)
    if tiny:
        configs["transformer"].update(TINY)
        configs["text_encoder_2"].update(num_layers=2, d_model=256, d_ff=512, num_heads=4)
        configs["transformer"]["joint_attention_dim"] = 256
        configs["vae"]["block_out_channels"] = [32, 32, 64, 64]
    return configs


def build_pipeline(device: str, tiny: bool) -> Any:
    """A ProcessPipeline of FLUX.1-dev-shaped random components in bf16 on `device`."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTokenizer, T5Tokenizer

    from procseq.models.loading import EMBEDDED_DIR, ModelDefaults
    from procseq.pipelines.text_to_sequence import ProcessPipeline

    tok = CLIPTokenizer.from_pretrained(EMBEDDED_DIR / "tokenizer")
    tok2 = T5Tokenizer.from_pretrained(EMBEDDED_DIR / "tokenizer_2")
    configs = flux_configs(tiny)
    configs["text_encoder"].update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id)
    configs["text_encoder_2"].update(vocab_size=len(tok2))
    parts = {n: meta_component(n, configs[n], torch.bfloat16, device)  # random, built in bf16 on the device
             for n in ("transformer", "vae", "text_encoder", "text_encoder_2")}
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = ProcessPipeline(scheduler=scheduler, tokenizer=tok, tokenizer_2=tok2, **parts)
    pipe.defaults = ModelDefaults(frame_size=336, max_frames=16, max_sequence_length=512, num_inference_steps=28)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def transformer_flops(config: dict[str, Any], image_tokens: int, text_tokens: int) -> float:
    """FLOPs of one transformer forward (batch 1), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    model = meta_component("transformer", config, torch.bfloat16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**transformer_inputs(model, 1, image_tokens, text_tokens))
    return float(counter.get_total_flops())


def generation(pipe: Any, device: str, args: argparse.Namespace, name: str, steps: int, **kw: Any) -> None:
    """Time one sequence (after a 2-step warm-up of the same shape) and compare its peak with the plan."""
    from PIL import Image

    frames, size = args.frames, args.frame_size
    kw = {"domain": "painting", "frames": frames, "frame_size": size, "output_type": "np", **kw}
    if kw.pop("known_frame", False):
        kw["known"] = {frames - 1: Image.new("RGB", (size, size), (200, 120, 40))}
    pipe("a red lego house", num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kw)
    with Memory(device) as mem:
        start = time.perf_counter()
        out = pipe("a red lego house", num_inference_steps=steps, generator=torch.Generator().manual_seed(0), **kw)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    tokens = (math.ceil(math.sqrt(frames)) * (size // 16)) ** 2
    flops = transformer_flops(flux_configs(args.tiny)["transformer"], tokens, 512) * steps
    plan = plan_sequence(FLUX, frames, size, kw.get("mode", "grid"), len(kw.get("known", {})), "bfloat16",
                         cpu_offload=name.endswith("offload"))  # FLUX.1-dev's (with --tiny: only run, not compared)
    record(f"generate.{name}", {"seconds": round(seconds, 3), "steps": steps, "frames": len(out.frames[0]),
                                "transformer_tflop": round(flops / 1e12, 1),
                                "flop_bound_s": round(flops / (args.peak_tflops * 1e12), 3),
                                "ratio_to_bound": round(seconds / (flops / (args.peak_tflops * 1e12)), 2),
                                "peak_gb": round(mem.peak / GB, 2),
                                "plan_gb": round(plan.peak / GB, 2)})


def training(pipe: Any, device: str, args: argparse.Namespace, kind: str, batch: int) -> None:
    """Steps/s and peak memory of LoRA training at rank 64 (checkpointing, CAME) against the plan."""
    from procseq.training.config import RunConfig
    from procseq.training.memory import plan_training
    from procseq.training.memory_check import train_steps

    cfg = RunConfig.from_dict({
        "model": {"path": FLUX, "dtype": "bfloat16"}, "data": {"domains": ["lego", "clay"]},
        "adapter": {"kind": "asymmetric", "rank": 64, "alpha": 64}, "known_frames": {"rank": 64, "alpha": 64},
        "optim": {"name": args.optimizer}, "train": {"batch_size": batch, "gradient_checkpointing": True}})
    model = pipe.transformer.train()
    frames, size = 4, 512 if not args.tiny else 64
    image = (2 * size // 16) ** 2
    with Memory(device) as mem:
        seconds = train_steps(model, cfg, kind, image, 512, args.train_steps, device)
    plan = plan_training(cfg, kind, frames, size)
    timed = seconds[2:] or seconds
    record(f"train.{kind}.batch{batch}", {"steps_per_s": round(len(timed) / sum(timed), 3), "image_tokens": image,
                                          "peak_gb": round(mem.peak / GB, 2),
                                          "plan_gb": round(plan.peak / GB, 2)})


def remove_trained(model: torch.nn.Module) -> None:
    """Take the LoRA a training part added off the shared transformer (procseq's adapters or peft's)."""
    from procseq.adapters import adapter_layers, remove_adapters

    if adapter_layers(model):
        remove_adapters(model)
    if getattr(model, "peft_config", None):
        model.delete_adapters(list(model.peft_config))
    model.requires_grad_(False)


def cublas_repro(device: str, args: argparse.Namespace) -> None:
    """procseq-tiny base training under bf16 autocast at batch 128 (issue 12's failure), then the variants."""
    from diffusers import FluxPipeline

    from procseq.models.loading import EMBEDDED_DIR
    from procseq.training.config import RunConfig
    from procseq.training.trainer import Trainer

    class Grids(torch.utils.data.Dataset):
        def __init__(self, n: int) -> None:
            g = torch.Generator().manual_seed(0)
            self.items = [{"grid": torch.rand(3, 96, 96, generator=g) * 2 - 1, "prompt": "a red circle",
                           "num_frames": 9, "domain": "painting"} for _ in range(n)]
            self.num_frames_list = [9] * n
            self.domains = ["painting"] * n

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return self.items[i]

    variants = [("autocast-bf16-batch128", "bf16", "float32", 128), ("bf16-weights-batch128", "no", "bfloat16", 128),
                ("autocast-bf16-batch16", "bf16", "float32", 16), ("fp32-batch128", "no", "float32", 128)]
    for name, mixed, dtype, batch in variants:
        batch = 4 if args.tiny else batch

        def run() -> None:
            cfg = RunConfig.from_dict({
                "model": {"path": str(EMBEDDED_DIR), "dtype": dtype}, "optim": {"name": "adamw", "lr": 1e-4},
                "train": {"output_dir": f"{args.workdir}/cublas-{name}", "max_steps": 3, "batch_size": batch,
                          "mixed_precision": mixed if device != "cpu" else "no", "checkpoint_every": 100,
                          "log_every": 1}})
            pipe = FluxPipeline.from_pretrained(str(EMBEDDED_DIR), dtype=getattr(torch, dtype))
            result = Trainer(cfg, pipe, Grids(batch), lambda p, d: None).train(progress=False)
            record(f"cublas.{name}", {"ok": True, "loss": result.loss})

        attempt(f"cublas.{name}", run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="flux_gpu.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="A FLUX-shaped model of a few blocks (the CPU check).")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--frame-size", type=int, default=336)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--optimizer", default="came")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="Dense bf16 TFLOP/s (H100/H200 SXM: 989).")
    parser.add_argument("--workdir", default="/tmp/flux_gpu_check")
    parser.add_argument("--skip", default="", help="Comma-separated parts to skip: cublas,generate,offload,train.")
    args = parser.parse_args()
    if args.tiny:
        args.frames, args.frame_size, args.steps, args.train_steps = 4, 64, 2, 3
    device, skip = args.device, set(args.skip.split(","))
    record("device", torch.cuda.get_device_name() if device != "cpu" else "cpu")
    record("torch", torch.__version__)
    if "cublas" not in skip:
        cublas_repro(device, args)
    pipe = build_pipeline(device, args.tiny)
    if "generate" not in skip:
        for name, kw in (("grid", {}), ("known_frame", {"known_frame": True, "known_mode": "concat"}),
                         ("regional", {"mode": "regional"})):
            attempt(f"generate.{name}", lambda: generation(pipe, device, args, name, args.steps, **kw))
    if "offload" not in skip and device != "cpu":
        pipe.to("cpu")
        pipe.enable_model_cpu_offload()
        attempt("generate.grid_offload", lambda: generation(pipe, device, args, "grid_offload", args.steps))
        pipe.remove_all_hooks()
    if "train" not in skip:
        pipe.to(device)
        pipe.text_encoder_2 = pipe.text_encoder = None  # training keeps only the transformer on the GPU
        if device != "cpu":
            torch.cuda.empty_cache()
        for kind in ("adapter", "known-frames"):
            for batch in (1, 2):
                attempt(f"train.{kind}.batch{batch}", lambda: training(pipe, device, args, kind, batch))
                remove_trained(pipe.transformer)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(RESULTS, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
