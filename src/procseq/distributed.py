"""The process group of a many-process launch (``torchrun``, ``accelerate launch``), on GPUs or CPUs.

accelerate's ``PartialState()`` only forms a process group on CPUs when asked to (``cpu=True``):
without it, every process of ``torchrun --nproc_per_node 2`` on a machine without CUDA believes it is
the only one (rank 0 of 1), and all of them write the same files. Everything in procseq that needs
the rank (training, batch generation) gets it from :func:`process_state`.
"""

from __future__ import annotations

import torch
from accelerate import PartialState


def process_state() -> PartialState:
    """accelerate's (shared) process state for this launch: gloo CPU processes when there is no CUDA."""
    return PartialState(cpu=not torch.cuda.is_available())
