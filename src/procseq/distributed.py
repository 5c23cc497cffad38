"""The process group of a many-process launch (``torchrun``, ``accelerate launch``), on GPUs or CPUs.

accelerate's ``PartialState()`` only forms a process group on CPUs when asked to (``cpu=True``):
without it, every process of ``torchrun --nproc_per_node 2`` on a machine without CUDA believes it is
the only one (rank 0 of 1), and all of them write the same files. Everything in procseq that needs
the rank (training, batch generation) gets it from :func:`process_state`.

``accelerate launch --num_processes N`` without a multi-process configuration (``--cpu``, or no
``--multi_gpu``) starts *one* process that is told of a master address but of no world: procseq refuses
it in one line (:func:`check_launch`) instead of silently running once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import PartialState

TORCHRUN_HINT = "torchrun --nproc_per_node N -m procseq.cli ..."


def check_launch(environ: dict[str, str] | None = None) -> None:
    """Refuse a launch that asked for several processes and got one: accelerate's single-process launcher sets
    ``ACCELERATE_USE_CPU`` and, for ``--num_processes`` > 1, ``MASTER_ADDR``, but no ``WORLD_SIZE``."""
    env = os.environ if environ is None else environ
    if "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        raise ValueError("`accelerate launch --num_processes N` started a single procseq process here (accelerate "
                         f"runs several only with --multi_gpu on GPUs); launch on CPUs with torchrun: {TORCHRUN_HINT}")


def process_state() -> PartialState:
    """accelerate's (shared) process state for this launch: gloo CPU processes when there is no CUDA."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
