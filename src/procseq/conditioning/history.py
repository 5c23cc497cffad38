"""Loom's sparse history and step embeddings (the frame-by-frame mode's two inputs besides the text).

**Sparse history.** Frame ``t`` is conditioned on ``K`` earlier frames at ``k_i = floor(i * t / (K + 1))``,
``i = 1..K``: spread uniformly over what came before, so the cost per frame stays fixed however long the
sequence grows. Every ``k_i`` lies in ``0..t-1``. Edge cases: frame 0 has no history (empty); while
``t < K + 1`` some ``k_i`` coincide and are kept once, so frame ``t`` has ``min(K, t)`` distinct history
frames at most (``t = 1``: only frame 0). Training shifts all indices by Loom's **rotation offset**
``o``, a small shift ``0 <= o < floor(t / (K + 1))`` (:func:`rotation_offset`; ``o = 0`` at inference), so the
model learns to read history a little off the formula's fixed positions; within that bound no index reaches
``t`` (``floor(K t / (K + 1)) + o < t``), so nothing wraps around.
The history frames are known frames (DESIGN.md #10): clean, at their own cells, run in the t = 0
condition pass (:class:`procseq.conditioning.frames.KnownFrames`).

**Step embedding.** A learned table of ``num_positions`` rows of the packed latent width (the transformer's
``in_channels``), read at the frame's progress ``t / (n - 1)`` by linear interpolation between rows (so any
sequence length maps onto the same table), added to that frame's tokens **before** ``x_embedder`` by a
forward pre-hook (DESIGN.md #3: an input addition, no block code changes). The history frames get the
embedding of their own steps in the condition pass, the generated frame its own in the main pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

HistoryKind = Literal["sparse", "previous", "all", "none"]
HISTORY_KINDS: tuple[str, ...] = ("sparse", "previous", "all", "none")
EMBEDDING_FILE = "step_embedding.safetensors"


def history_indices(t: int, k: int, offset: int = 0) -> tuple[int, ...]:
    """Loom's sparse history of frame `t`: ``floor(i * t / (k + 1)) (+ offset) mod t`` for ``i = 1..k``,
    sorted, each index once; empty for ``t == 0`` or ``k == 0``.

    Args:
        t: the frame being generated (0-based).
        k: how many history frames at most.
        offset: the training rotation offset (0 at inference, below :func:`offset_bound` in training): every
            index shifted by it (modulo `t`, which only a larger offset than Loom's bound reaches).
    """
    if t < 0 or k < 0:
        raise ValueError(f"history_indices needs t >= 0 and k >= 0, got t={t}, k={k}.")
    if t == 0 or k == 0:
        return ()
    return tuple(sorted({(i * t // (k + 1) + offset) % t for i in range(1, k + 1)}))


def offset_bound(t: int, k: int) -> int:
    """How many rotation offsets frame `t` with `k` history frames has: ``max(1, floor(t / (k + 1)))`` (Loom's
    ``0 <= o < floor(T / (K + 1))``; at least the offset 0)."""
    if t < 0 or k < 0:
        raise ValueError(f"offset_bound needs t >= 0 and k >= 0, got t={t}, k={k}.")
    return max(1, t // (k + 1))


def rotation_offset(t: int, k: int | torch.Generator, generator: torch.Generator | None = None) -> int:
    """Loom's training rotation offset for frame `t` with `k` history frames: uniform in
    ``0 <= o < floor(t / (k + 1))`` (:func:`offset_bound`), 0 for frame 0. Draws one number from `generator`
    whenever ``t > 0`` (whatever the bound), so the caller's later draws do not depend on it.

    The old call ``rotation_offset(t, generator)`` (uniform in ``0..t-1``, offsets up to 29 at t = 30 where the
    paper's bound is 10) still works for a run started with it (exact resume), with a DeprecationWarning.
    """
    if isinstance(k, torch.Generator):  # the v2 trainer's call: keep its draws for a resumed run
        import warnings

        warnings.warn("rotation_offset(t, generator) draws 0..t-1 (not Loom's bound); call rotation_offset(t, k, "
                      "generator)", DeprecationWarning, stacklevel=2)
        return int(torch.randint(t, (1,), generator=k)) if t > 0 else 0
    if generator is None:
        raise TypeError("rotation_offset(t, k, generator) needs a torch.Generator.")
    return int(torch.randint(offset_bound(t, k), (1,), generator=generator)) if t > 0 else 0


def select_history(t: int, kind: HistoryKind = "sparse", k: int = 2) -> tuple[int, ...]:
    """The earlier frames that condition frame `t`: ``sparse`` (:func:`history_indices`), ``previous``
    (frame t-1 only), ``all`` (every earlier frame) or ``none``; the last three are Loom's ablations."""
    if kind == "sparse":
        return history_indices(t, k)
    if kind == "previous":
        return (t - 1,) if t > 0 else ()
    if kind == "all":
        return tuple(range(t))
    if kind == "none":
        return ()
    raise ValueError(f"Unknown history kind {kind!r}; use one of {', '.join(HISTORY_KINDS)}.")


def progress(step: int | torch.Tensor, num_frames: int) -> torch.Tensor:
    """Where a step lies in its sequence, ``step / (num_frames - 1)`` in ``[0, 1]`` (0 for one frame)."""
    step = torch.as_tensor(step, dtype=torch.float32)
    return step / max(num_frames - 1, 1)


class StepEmbedding(nn.Module):
    """A learned table ``(num_positions, dim)``, read at a frame's progress by linear interpolation.

    Args:
        dim: the packed latent width (the transformer's ``in_channels``).
        num_positions: rows of the table (progress 0 is row 0, progress 1 the last row).
    """

    def __init__(self, dim: int, num_positions: int = 16):
        super().__init__()
        if num_positions < 2:
            raise ValueError(f"A step embedding needs at least 2 positions, got {num_positions}.")
        self.table = nn.Parameter(torch.zeros(num_positions, dim))

    @property
    def num_positions(self) -> int:
        """Rows of the table."""
        return self.table.shape[0]

    def forward(self, progress: torch.Tensor) -> torch.Tensor:
        """Progress values in ``[0, 1]`` of any shape ``S`` -> embeddings ``S + (dim,)``."""
        pos = progress.to(self.table.device, torch.float32).clamp(0, 1) * (self.num_positions - 1)
        lo = pos.floor().long().clamp(max=self.num_positions - 2)
        frac = (pos - lo).unsqueeze(-1).to(self.table.dtype)
        return self.table[lo] * (1 - frac) + self.table[lo + 1] * frac

    def for_frames(self, steps: Sequence[int], num_frames: int, tokens_per_frame: int) -> torch.Tensor:
        """The addition for the tokens of frames `steps` laid out one after another: ``(len(steps) * tokens, dim)``."""
        emb = self(progress(torch.tensor(list(steps)), num_frames))
        return emb.repeat_interleave(tokens_per_frame, dim=0)


@contextmanager
def added_to_input(transformer: Any, addition: torch.Tensor | None) -> Iterator[None]:
    """Add `addition` ``(seq, in_channels)`` or ``(B, seq, in_channels)`` to the input of the transformer's
    ``x_embedder`` while the context is open (a forward pre-hook; None: no change). A batch of 1 broadcasts
    (both CFG branches, every sequence of a batch)."""
    if addition is None:
        yield
        return
    embedder = transformer.x_embedder

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = args[0]
        add = addition.to(x.dtype)
        if add.shape[-2] != x.shape[-2]:
            raise ValueError(f"The step embedding covers {add.shape[-2]} tokens but the input has {x.shape[-2]}.")
        if add.dim() == 3 and add.shape[0] not in (1, x.shape[0]):
            add = add.repeat(x.shape[0] // add.shape[0], 1, 1)
        return (x + add, *args[1:])

    handle = embedder.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def save_step_embedding(embedding: StepEmbedding, path: str | Path) -> Path:
    """Write the table as ``step_embedding.weight`` in a safetensors file (with its number of positions)."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file({"step_embedding.weight": embedding.table.detach().float().cpu().contiguous()}, str(path),
              metadata={"num_positions": str(embedding.num_positions)})
    return path


def load_step_embedding(path: str | Path) -> StepEmbedding:
    """Read a table written by :func:`save_step_embedding`; ``ValueError`` when the file holds none."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No step embedding at {path}; pass the folder written by "
                                "`procseq train frame-by-frame` (OUTPUT_DIR/model).")
    try:
        table = load_file(str(path)).get("step_embedding.weight")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}).") from err
    if table is None or table.dim() != 2:
        raise ValueError(f"{path} holds no step_embedding.weight table (num_positions, dim).")
    emb = StepEmbedding(table.shape[1], table.shape[0])
    with torch.no_grad():
        emb.table.copy_(table)
    return emb


__all__ = ["EMBEDDING_FILE", "HISTORY_KINDS", "HistoryKind", "StepEmbedding", "added_to_input", "history_indices",
           "load_step_embedding", "offset_bound", "progress", "rotation_offset", "save_step_embedding", "select_history"]
