"""ProcessMaker's representation alignment: keep the adapted blocks close to the frozen model.

Teacher and student are the *same* transformer: the teacher pass runs with the procseq adapters
switched off (:func:`procseq.adapters.routing.disabled`) under ``torch.no_grad()``, so no second
copy is held in memory. Both passes see the same inputs (same latents, noise, timestep and text), so
hidden states are compared on the same tokens. They are read with forward hooks on a few blocks
spread over the double and single stacks (:func:`alignment_blocks`; block code is never edited).

For each chosen block ``l`` with image-token states ``h_s`` (student) and ``h_t`` (teacher), both of
shape ``(batch, seq, dim)``::

    L_l = mean_tokens(1 - cos(h_s, h_t)) + gamma * mean(||h_s - h_t||^2)       (per sample)
    L_align = mean_batch(lambda(t) * mean_l L_l),   lambda(t) = lambda0 * s(t)

``1 - cos`` is computed as ``0.5 * ||h_s/|h_s| - h_t/|h_t|||^2`` (equal in exact arithmetic), so the
loss is exactly 0 when the adapters contribute nothing. The default schedule is ``s(t) = 1 - t``
(with the Flux convention t=1 noise, t=0 data): alignment is strongest at low noise, where the frozen
model's detail rendering should be kept, and fades at high noise, where the layout of a process grid
(the thing the adapters must learn) is decided. ``"t"`` and ``"constant"`` are the alternatives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import torch
import torch.nn.functional as F
from torch import nn

from procseq.adapters.routing import disabled

#: FLUX.1's reference blocks (global index over 19 double + 38 single = 57 blocks).
FLUX_REFERENCE_BLOCKS: tuple[int, ...] = (4, 9, 14, 19, 29)
FLUX_DOUBLE, FLUX_SINGLE = 19, 38

Schedule = Union[Literal["1-t", "t", "constant"], Callable[[torch.Tensor], torch.Tensor]]


def alignment_blocks(num_layers: int, num_single_layers: int,
                     reference: tuple[int, ...] = FLUX_REFERENCE_BLOCKS) -> list[str]:
    """Module paths of the blocks to align, scaled from FLUX.1's depth to this model's.

    A reference index ``g`` (of FLUX's 19 double + 38 single blocks) keeps its stack and its relative
    depth within it: double ``g -> round(g * num_layers / 19)``, single
    ``g - 19 -> round((g - 19) * num_single_layers / 38)``, clipped and de-duplicated. For FLUX.1 itself
    this is the identity: ``transformer_blocks.{4,9,14}``, ``single_transformer_blocks.{0,10}``.
    """
    if num_layers < 0 or num_single_layers < 0 or num_layers + num_single_layers == 0:
        raise ValueError(f"The transformer needs blocks to align, got {num_layers} double and "
                         f"{num_single_layers} single.")
    paths: list[str] = []
    for g in reference:
        if g < FLUX_DOUBLE and num_layers:
            path = f"transformer_blocks.{min(round(g * num_layers / FLUX_DOUBLE), num_layers - 1)}"
        elif num_single_layers:
            i = min(round((g - FLUX_DOUBLE) * num_single_layers / FLUX_SINGLE), num_single_layers - 1)
            path = f"single_transformer_blocks.{max(i, 0)}"
        else:
            path = f"transformer_blocks.{num_layers - 1}"
        if path not in paths:
            paths.append(path)
    return paths


@dataclass
class AlignmentConfig:
    """Representation alignment settings.

    Args:
        lambda0: overall weight (``lambda(t) = lambda0 * s(t)``).
        gamma: weight of the MSE term next to ``1 - cos``.
        schedule: ``s(t)``: ``"1-t"`` (default), ``"t"``, ``"constant"`` or a callable ``(batch,) -> (batch,)``.
        blocks: module paths to align; None = :func:`alignment_blocks` for the model's depth.
    """

    lambda0: float = 0.5
    gamma: float = 0.1
    schedule: Schedule = "1-t"
    blocks: list[str] | None = None

    def __post_init__(self) -> None:
        if self.lambda0 < 0 or self.gamma < 0:
            raise ValueError(f"lambda0 and gamma must be >= 0, got lambda0={self.lambda0}, gamma={self.gamma}.")
        if not callable(self.schedule) and self.schedule not in ("1-t", "t", "constant"):
            raise ValueError(f"schedule must be '1-t', 't', 'constant' or a callable, got {self.schedule!r}.")


def time_weight(t: torch.Tensor, config: AlignmentConfig) -> torch.Tensor:
    """``lambda(t) = lambda0 * s(t)`` for `t` of shape ``(batch,)`` in [0, 1]."""
    if callable(config.schedule):
        s = config.schedule(t)
    else:
        s = {"1-t": 1 - t, "t": t, "constant": torch.ones_like(t)}[config.schedule]
    return config.lambda0 * s


def alignment_distance(student: torch.Tensor, teacher: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample ``mean_tokens(1 - cos) + gamma * MSE``; inputs ``(batch, seq, dim)`` -> ``(batch,)``."""
    s, t = student.float(), teacher.float()
    one_minus_cos = 0.5 * (F.normalize(s, dim=-1) - F.normalize(t, dim=-1)).pow(2).sum(-1)  # (batch, seq)
    mse = (s - t).pow(2).mean(-1)
    return (one_minus_cos + gamma * mse).flatten(1).mean(1)


def _image_states(output: Any) -> torch.Tensor:
    # Flux blocks return (encoder_hidden_states, hidden_states); the image tokens are the second.
    return output[1] if isinstance(output, tuple) else output


@contextmanager
def capture_hidden_states(transformer: nn.Module, blocks: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the image-token output ``(batch, seq, dim)`` of each block in `blocks` (forward hooks)."""
    states: dict[str, torch.Tensor] = {}
    handles = []
    for path in blocks:
        try:
            module = transformer.get_submodule(path)
        except AttributeError:
            raise ValueError(f"No block {path!r} in this transformer; use alignment_blocks(num_layers, "
                             f"num_single_layers) for valid paths.") from None
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, path=path: states.__setitem__(path, _image_states(out))))
    try:
        yield states
    finally:
        for h in handles:
            h.remove()


@dataclass
class AlignmentOutput:
    """Result of :meth:`RepresentationAlignment.forward`.

    Attributes:
        output: the student transformer's output (what the flow-matching loss uses).
        loss: scalar alignment loss, already weighted by ``lambda(t)``.
        per_block: unweighted distance per block, each ``(batch,)``.
        weight: ``lambda(t)``, shape ``(batch,)``.
    """

    output: Any
    loss: torch.Tensor
    per_block: dict[str, torch.Tensor] = field(default_factory=dict)
    weight: torch.Tensor | None = None


class RepresentationAlignment:
    """Align the adapted transformer's block states to its own adapter-free states.

    Example::

        align = RepresentationAlignment(transformer)
        with route(transformer, domains=batch_domains):
            out = align(t, hidden_states=x_t, encoder_hidden_states=..., timestep=t, ...)
        loss = flow_matching_loss(out.output.sample, target) + out.loss
    """

    def __init__(self, transformer: nn.Module, config: AlignmentConfig | None = None) -> None:
        self.transformer = transformer
        self.config = config or AlignmentConfig()
        cfg = getattr(transformer, "config", None)
        self.blocks = self.config.blocks or alignment_blocks(
            getattr(cfg, "num_layers", len(getattr(transformer, "transformer_blocks", []))),
            getattr(cfg, "num_single_layers", len(getattr(transformer, "single_transformer_blocks", []))))

    def teacher_states(self, **inputs: Any) -> dict[str, torch.Tensor]:
        """Block states of the frozen model (adapters off, no grad) on `inputs`."""
        with torch.no_grad(), disabled(self.transformer), capture_hidden_states(self.transformer, self.blocks) as st:
            self.transformer(**inputs)
        return {k: v.detach() for k, v in st.items()}

    def loss(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
             t: torch.Tensor) -> AlignmentOutput:
        """Weighted alignment loss from captured states; `t` ``(batch,)`` in [0, 1]."""
        per_block = {k: alignment_distance(student[k], teacher[k], self.config.gamma) for k in self.blocks}
        weight = time_weight(t.to(next(iter(per_block.values())).device).float(), self.config)
        mean = torch.stack(list(per_block.values())).mean(0)  # (batch,)
        return AlignmentOutput(output=None, loss=(weight * mean).mean(), per_block=per_block, weight=weight)

    def __call__(self, t: torch.Tensor, **inputs: Any) -> AlignmentOutput:
        """Student pass (with grad, adapters as routed) and teacher pass on the same `inputs`.

        `t`: flow time ``(batch,)`` in [0, 1] for ``lambda(t)`` (the transformer's own ``timestep``
        input is passed through `inputs` unchanged).
        """
        with capture_hidden_states(self.transformer, self.blocks) as student:
            output = self.transformer(**inputs)
        result = self.loss(dict(student), self.teacher_states(**inputs), t)
        result.output = output
        return result
