"""``train.shard: fsdp``: the transformer sharded over the processes with PyTorch FSDP (``fully_shard``).

Every transformer block (double and single) and the root are sharded, so each process holds 1/N of the
base weights, the trainable weights, their gradients and the optimizer state, and gathers one block at a
time while it runs. accelerate offers FSDP only on accelerators (its ``MULTI_CPU`` launch has no FSDP),
so procseq calls ``torch.distributed.fsdp.fully_shard`` itself: the same code on GPUs (NCCL) and on CPUs
(gloo, where the tests run it). Gradients are averaged by FSDP's reduce-scatter (no DDP wrapper).

Checkpoints hold the full (gathered) trainable weights (``sharded_model.safetensors``) and the full
optimizer state (``sharded_optimizer.bin``), written by the main process; every process reads them back
and keeps its shard, so a run resumes on any number of processes. With one process nothing is sharded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

MODEL_FILE = "sharded_model.safetensors"
OPTIMIZER_FILE = "sharded_optimizer.bin"


def world_size() -> int:
    """Processes in the launch (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def shard_transformer(model: torch.nn.Module) -> bool:
    """Shard `model`'s blocks and root in place over the process group; False (nothing done) for one process."""
    if world_size() == 1:
        return False
    from torch.distributed.fsdp import fully_shard

    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        fully_shard(block)
    fully_shard(model)
    return True


def _options():  # noqa: ANN202
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def trainable_names(model: torch.nn.Module) -> set[str]:
    """Names of `model`'s trainable parameters (as its state dict names them)."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


def save_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, main_process: bool) -> None:
    """Gather the trainable weights and the optimizer state (collective: every process calls it); the main
    process writes them into `folder`."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    keep = trainable_names(model)
    weights = get_model_state_dict(model, options=_options())
    optim = get_optimizer_state_dict(model, optimizer, options=_options())
    if main_process:
        save_file({k: v.contiguous() for k, v in weights.items() if k in keep}, str(Path(folder) / MODEL_FILE))
        torch.save(optim, Path(folder) / OPTIMIZER_FILE)


def load_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Read `folder`'s full trainable weights and optimizer state on every process and keep this one's shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    weights = load_file(str(Path(folder) / MODEL_FILE))
    optim = torch.load(Path(folder) / OPTIMIZER_FILE, weights_only=True)
    options = _options()
    options.strict = False  # the file holds the trainable weights only
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optim, options=_options())


def unshard(model: torch.nn.Module) -> None:
    """Gather every sharded module's parameters back into whole tensors (before the final save)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.unshard()
