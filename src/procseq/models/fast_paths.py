"""Speed-ups for a loaded pipeline (issue 30): one exact and on by default, one within 5e-7 and opt-in.

**Rotary tables remembered** (exact). ``FluxTransformer2DModel`` rebuilds the cos/sin tables of its position ids
(in float64, axis by axis) in every forward, although the ids of one generation are the same at every step.
:class:`CachedPosEmbed` is ``FluxPosEmbed`` that remembers the tables of the last few id tensors it met (compared by
value), so a 6-step generation builds them once per branch. Positions still come only from ids (DESIGN.md #4).
:func:`cache_rotary_tables` installs it; :func:`procseq.pipelines.loading.load_pipeline` calls it.

(Copying the weights out of safetensors' memory map into 64-byte-aligned memory was tried too: ~1.7 % faster, but
MKL's matrix kernels then round some sums differently from stock diffusers, whose weights stay where the file put
them, so the grid stopped being bit for bit FluxPipeline's in 4 of 5 runs of ``tests/core``. Not kept.)

**The sigmoid-form GELU** (not exact, so not on by default): FLUX's tanh-approximated GELU written as
``x * sigmoid(2c (x + 0.044715 x^3))`` (the same function: ``(1 + tanh z) / 2 = sigmoid(2z)``). On CPUs whose
``tanh`` kernel is slow (AVX2: 3.7x an exact GELU's time) it is about 2x faster, eager or compiled, and within 5e-7 of
``F.gelu(approximate="tanh")``; a 9-frame grid runs 1.07-1.09x faster with it, one output pixel in ~27,000 moved by
1/255 (``experiments/speed_states.py --parts gelu repeated``).
:func:`sigmoid_gelu` installs it (it acts on float32 on the CPU; elsewhere the stock kernel runs);
``load_pipeline(compile=True)`` does, as the compiled path's outputs are not bit for bit the eager ones anyway.
"""

from __future__ import annotations

import torch
from diffusers.models.activations import GELU as ProjectionGELU
from diffusers.models.transformers.transformer_flux import FluxPosEmbed


class CachedPosEmbed(FluxPosEmbed):
    """``FluxPosEmbed`` that remembers the ``(cos, sin)`` tables of the last `size` id tensors it computed them for.

    Ids are compared by value (shape, dtype, device and every entry), so a new layout, frame count or text length
    computes its own tables; the tables returned are the ones ``FluxPosEmbed`` computes for those ids. While
    ``torch.compile`` traces the model the cache steps aside (a value comparison would break the graph), and tables
    computed under ``torch.inference_mode`` are not handed to a call outside it (autograd refuses inference tensors).

    Args:
        theta: the RoPE base, as ``FluxPosEmbed``.
        axes_dim: the per-axis dimensions, as ``FluxPosEmbed``.
        size: how many id tensors to remember (true CFG's two branches of different text lengths, a condition pass).
    """

    def __init__(self, theta: int, axes_dim: list[int], size: int = 4):
        super().__init__(theta, axes_dim)
        self.size = size
        self._tables: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = []

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.compiler.is_compiling():
            return super().forward(ids)
        usable = torch.is_inference_mode_enabled()  # tables made under inference_mode serve only there
        for known, tables in self._tables:
            if known.shape == ids.shape and known.dtype == ids.dtype and known.device == ids.device \
                    and (usable or not tables[0].is_inference()) and torch.equal(known, ids):
                return tables
        tables = super().forward(ids)
        # a new list bound in one step: a call in another thread reads the old list or the new one, never half of one
        self._tables = [(ids.detach().clone(), tables), *self._tables[: self.size - 1]]
        return tables


def cache_rotary_tables(transformer: torch.nn.Module, size: int = 4) -> CachedPosEmbed:
    """Give `transformer` (a ``FluxTransformer2DModel``) a :class:`CachedPosEmbed` in place of its ``pos_embed``
    (idempotent); returns it."""
    current = transformer.pos_embed
    if isinstance(current, CachedPosEmbed):
        return current
    if type(current) is not FluxPosEmbed:
        raise ValueError(f"Expected diffusers' FluxPosEmbed as the transformer's pos_embed, found "
                         f"{type(current).__name__}; leave it as it is or restore FluxPosEmbed first.")
    transformer.pos_embed = CachedPosEmbed(current.theta, list(current.axes_dim), size)
    return transformer.pos_embed


GELU_C = 1.5957691216057308
"""``2 * sqrt(2 / pi)``: ``gelu_tanh(x) = x * sigmoid(GELU_C * (x + 0.044715 x^3))``."""


def gelu_tanh_by_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x, approximate="tanh")`` computed through ``sigmoid`` (within 5e-7 in float32); in place on a
    temporary when no gradient is recorded."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return x * torch.sigmoid(GELU_C * (x + 0.044715 * x * x * x))
    y = x * x
    y.mul_(0.044715 * GELU_C).add_(GELU_C).mul_(x)
    return y.sigmoid_().mul_(x)


def _sigmoid_form_applies(x: torch.Tensor) -> bool:
    """float32 on the CPU: where the sigmoid form is faster and as precise (elsewhere the stock kernel: GPUs have a
    fused one, and half-precision inputs are upcast inside ``F.gelu`` but would round at every step here)."""
    return x.device.type == "cpu" and x.dtype == torch.float32


class SigmoidGELU(torch.nn.GELU):
    """``nn.GELU(approximate="tanh")`` through :func:`gelu_tanh_by_sigmoid` for float32 on the CPU."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.GELU's name)
        return gelu_tanh_by_sigmoid(input) if _sigmoid_form_applies(input) else super().forward(input)


class SigmoidProjectionGELU(ProjectionGELU):
    """diffusers' ``GELU`` (projection + tanh GELU, FLUX's feed-forward) through :func:`gelu_tanh_by_sigmoid` for
    float32 on the CPU."""

    def gelu(self, gate: torch.Tensor) -> torch.Tensor:
        return gelu_tanh_by_sigmoid(gate) if _sigmoid_form_applies(gate) else super().gelu(gate)


_SIGMOID_FORMS = {torch.nn.GELU: SigmoidGELU, ProjectionGELU: SigmoidProjectionGELU}
_TANH_FORMS = {fast: stock for stock, fast in _SIGMOID_FORMS.items()}


def sigmoid_gelu(model: torch.nn.Module, on: bool = True) -> int:
    """Switch every tanh-approximated GELU of `model` to its sigmoid form (`on`) or back; returns how many
    switched. The modules stay where they are, with their parameters and wrappers (only their class changes),
    so state dicts, adapters and peft layers are untouched."""
    swap = _SIGMOID_FORMS if on else _TANH_FORMS
    switched = 0
    for module in model.modules():
        new = swap.get(type(module))
        if new is not None and getattr(module, "approximate", None) == "tanh":
            module.__class__ = new
            switched += 1
    return switched



__all__ = ["CachedPosEmbed", "GELU_C", "SigmoidGELU", "SigmoidProjectionGELU", "cache_rotary_tables",
           "gelu_tanh_by_sigmoid", "sigmoid_gelu"]
