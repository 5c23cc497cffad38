"""The memory plan checked against a measured peak: FLUX-shaped random models trained for two steps on the CPU.

:func:`check` gives, for one model size, the plan of :func:`procseq.training.memory.plan_training` and the
peak measured in a fresh process (``python -m experiments.memory_check`` prints the table for a few sizes): the
peak resident memory (``VmHWM``) minus the resident memory before the model was built. The measured process runs
with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``), so a freed tensor's pages go back to the
system instead of lingering in malloc's heap (the CUDA allocator has no such heap either).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: FLUX-shaped sizes (hidden width = heads x head_dim; FLUX.1-dev: 24 x 128, 19 + 38 blocks).
SIZES: dict[str, dict[str, Any]] = {
    "xs": dict(num_layers=1, num_single_layers=2, attention_head_dim=32, num_attention_heads=4),
    "s": dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=4),
    "m": dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=8),
}

MEASURE = ("import sys; from procseq.training.memory_check import measure; a = sys.argv[1:]; "
           "print(measure(a[0], a[1], bool(int(a[2])), int(a[3]), int(a[4]), int(a[5])))")
"""The fresh process :func:`check` runs (``python -c MEASURE FOLDER KIND CKPT FRAMES SIZE TEXT``): prints the peak."""


def write_config_folder(out: Path, size: str) -> Path:
    """A diffusers folder holding only config files (no weights) of a FLUX-shaped model of `size`."""
    from procseq.models.memory import FLUX_DEV_CONFIG

    configs = json.loads(FLUX_DEV_CONFIG.read_text())
    head = SIZES[size]["attention_head_dim"]
    rope = [head // 4, 3 * head // 8, 3 * head // 8]
    configs["transformer"].update(SIZES[size], axes_dims_rope=rope, joint_attention_dim=256, pooled_projection_dim=64)
    (out / "model_index.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    for name, config in configs.items():
        (out / name).mkdir(exist_ok=True)
        (out / name / "config.json").write_text(json.dumps(config))
    return out


def run_config(folder: str, kind: str, checkpointing: bool, batch: int = 1) -> Any:
    """The RunConfig of one check: the folder's model in float32, rank 16, AdamW."""
    from procseq.training.config import RunConfig

    return RunConfig.from_dict({
        "model": {"path": folder, "dtype": "float32"}, "data": {"domains": ["lego", "clay"]},
        "adapter": {"kind": "asymmetric", "rank": 16}, "known_frames": {"rank": 16, "alpha": 16},
        "optim": {"name": "adamw"}, "train": {"batch_size": batch, "gradient_checkpointing": checkpointing}})


def measure(folder: str, kind: str, checkpointing: bool, frames: int, frame_size: int, text_tokens: int) -> int:
    """Bytes of peak resident memory of two training steps (model built here), beyond what was resident before."""
    import torch

    from procseq.training.memory import step_shapes

    cfg = run_config(folder, kind, checkpointing)
    config = json.loads((Path(folder) / "transformer" / "config.json").read_text())
    image, _ = step_shapes(cfg, {"vae": json.loads((Path(folder) / "vae" / "config.json").read_text())},
                           frames, frame_size)
    from diffusers import FluxTransformer2DModel

    def steps(config: dict[str, Any], image: int, text: int) -> None:
        model = FluxTransformer2DModel.from_config(config).requires_grad_(False).train()
        train_steps(model, cfg, kind, image, text, 2)

    torch.manual_seed(0)
    # the runtime's one-time set-up (kernel libraries, thread pools) first, on a model a few heads narrower
    steps({**config, "num_attention_heads": 1, "attention_head_dim": 16, "axes_dims_rope": [4, 6, 6]}, 64, 8)
    gc.collect()
    baseline = resident_bytes()
    reset_peak()
    steps(config, image, text_tokens)
    return peak_resident_bytes() - baseline


def train_steps(model: Any, cfg: Any, kind: str, image_tokens: int, text_tokens: int, steps: int,
                device: str = "cpu") -> list[float]:
    """`steps` training steps of trainer `kind` (adapter added as :func:`~procseq.training.memory.add_trainable`
    adds it, gradient checkpointing per `cfg`) on random inputs; returns the seconds of each step."""
    import time

    import torch

    from procseq.models.memory import transformer_inputs
    from procseq.training.flow_matching import flow_matching_loss
    from procseq.training.memory import add_trainable
    from procseq.training.optimizers import build_optimizer

    params = add_trainable(model, cfg, kind, cfg.train.batch_size)
    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    opt = build_optimizer(params, cfg.optim.name, 1e-4, 0.0)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        kwargs = transformer_inputs(model, cfg.train.batch_size, image_tokens, text_tokens, device=device)
        pred = model(**kwargs)[0]
        flow_matching_loss(pred, torch.randn_like(pred), kwargs["hidden_states"]).backward()
        del pred, kwargs
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """This process's peak resident memory (``VmHWM``). Not ``ru_maxrss``: Linux carries that over ``exec`` from
    the process that started this one, so a large parent (a test session) would set it."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def reset_peak() -> None:
    """Start the peak resident memory afresh from now (Linux >= 4.0: ``/proc/self/clear_refs``), where allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def check(size: str, kind: str, checkpointing: bool, frames: int = 4, frame_size: int = 256,
          text_tokens: int = 64, root: Path | None = None) -> dict[str, Any]:
    """Plan and measured peak (a fresh process) of one size/trainer/checkpointing setting, in bytes."""
    from procseq.training.memory import plan_training

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_config_folder(Path(root or tmp) / f"flux-{size}", size)
        cfg = run_config(str(folder), kind, checkpointing)
        plan = plan_training(cfg, kind, frames, frame_size, text_tokens=text_tokens)
        # a clean environment: nothing a calling process set (threads, launchers) changes what is measured
        env = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH", "HF_HUB_OFFLINE") if k in os.environ}
        env.update(MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
        args = [sys.executable, "-c", MEASURE, str(folder), kind, str(int(checkpointing)), str(frames), str(frame_size),
                str(text_tokens)]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        measured = int(proc.stdout.strip().splitlines()[-1])
    return {"size": size, "kind": kind, "checkpointing": checkpointing, "plan": plan.peak, "measured": measured,
            "error": plan.peak / measured - 1}

