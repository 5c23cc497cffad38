"""Run each trainer for a few steps; under ``torchrun --nproc_per_node 2`` (see test_distributed.py).

``python distributed_worker.py MODEL_DIR CORPUS OUT BATCH_SIZE``: for every case (base, adapter,
known-frames, the adapter with its transformer sharded by FSDP and gradient checkpointing, and the layouts trainer) trains to step 2, then starts again to step 3 (a resume from the step-2 checkpoint), in
``OUT/<case>``; writes this process's step-0 draws (noise, timesteps) to ``OUT/draws_<rank>.safetensors``;
and runs a 7-item batch generation (a stand-in pipeline that logs to ``OUT/batch_<rank>.log``) into
``OUT/batch``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from procseq.distributed import process_state

CASES = ("base", "adapter", "known-frames", "adapter-fsdp", "layouts")


def config(case: str, model_dir: str, corpus: str, out: str, batch_size: int, max_steps: int) -> Any:
    """The RunConfig of one case: the micro model, the test corpus, AdamW, a checkpoint every 2 steps."""
    from procseq.training.config import RunConfig

    data = {"dir": corpus, "domains": ["painting", "lego"], "caption_dropout": 0.3, "cache_latents": True}
    extra: dict[str, Any] = {"model": {"path": model_dir}}
    if case == "base":
        extra = {"model": {"path": model_dir, "train_text_encoders": True}, "autoencoder": {"steps": 0}}
    elif case.startswith("adapter"):
        data["domains"] = ["clay", "sand_art"]
        extra["adapter"] = {"kind": "asymmetric", "rank": 4}
    elif case == "layouts":  # every layout, mixed in each step, known frames, the step embedding
        extra["layouts"] = {"weights": {"grid": 1, "regional": 1, "frame-by-frame": 1},
                            "step_tokens": 4, "known": {"none": 1, "last": 1}, "cache_dir": f"{out}/cache"}
        extra["frame_by_frame"] = {"num_positions": 4}
    else:
        extra["known_frames"] = {"mode": "concat", "rank": 2, "alpha": 2, "cache_dir": f"{out}/cache"}
    return RunConfig.from_dict({
        **extra, "data": data,
        "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 1},
        "train": {"output_dir": out, "max_steps": max_steps, "batch_size": batch_size, "checkpoint_every": 2,
                  "log_every": 1, "seed": 1, "mixed_precision": "no",
                  **({"shard": "fsdp", "gradient_checkpointing": True} if case.endswith("fsdp") else {})},
    })


def run_case(case: str, model_dir: str, corpus: str, out: str, batch_size: int, max_steps: int) -> Any:
    """Train one case to `max_steps` (resuming from `out`'s newest checkpoint); returns the TrainResult."""
    cfg = config(case, model_dir, corpus, out, batch_size, max_steps)
    if case == "base":
        from procseq.training.run import run_training

        return run_training(cfg, progress=False)
    if case.startswith("adapter"):
        from procseq.training.adapters import run_adapter_training

        return run_adapter_training(cfg, progress=False)
    if case == "layouts":
        from procseq.training.layouts import run_layout_training

        return run_layout_training(cfg, progress=False)
    from procseq.training.known_frames import run_known_frames_training

    return run_known_frames_training(cfg, progress=False)


def step0_draws(model_dir: str, corpus: str, out: str, batch_size: int) -> dict[str, Any]:
    """This process's noise and timesteps of step 0 (base trainer), and the global batch it came from."""
    import torch

    from procseq.data.dataset import GridDataset
    from procseq.training.run import build_pipeline
    from procseq.training.trainer import Trainer

    cfg = config("base", model_dir, corpus, out, batch_size, 1)
    pipe, _ = build_pipeline(cfg)
    trainer = Trainer(cfg, pipe, GridDataset(corpus, "train", domains=cfg.data.domains), lambda p, d: None)
    acc = trainer.accelerator
    batch = trainer.make_batch(0, trainer.schedule(0)[acc.process_index :: acc.num_processes])
    return {"noise": batch.noise, "t": batch.t, "global": torch.tensor(trainer.schedule(0))}


def batch_generation(out: str, rank: int) -> None:
    """Items 1..7 (2 of them already finished by an earlier run) split across the processes."""
    from procseq.batch import read_prompt_file, run_batch
    from tests.core.batch_fakes import FakePipeline

    prompts = Path(out) / "prompts.jsonl"
    if rank == 0:
        prompts.write_text("".join(f'{{"prompt": "item {i}", "frames": 2}}\n' for i in range(1, 8)))
    process_state().wait_for_everyone()
    items, bad = read_prompt_file(prompts, {"domain": "painting", "seed": 0})
    run_batch(lambda: FakePipeline(), items[:2], bad, Path(out) / "batch", progress=False)  # an earlier run
    run_batch(lambda: FakePipeline(Path(out) / f"batch_{rank}.log"), items, bad, Path(out) / "batch", progress=False)


def main(model_dir: str, corpus: str, out: str, batch_size: str) -> None:
    from safetensors.torch import save_file

    for case in CASES:
        run_case(case, model_dir, corpus, f"{out}/{case}", int(batch_size), 2)
        run_case(case, model_dir, corpus, f"{out}/{case}", int(batch_size), 3)
    rank = process_state().process_index
    batch_generation(out, rank)
    save_file(step0_draws(model_dir, corpus, f"{out}/draws", int(batch_size)), str(Path(out) / f"draws_{rank}.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:])
