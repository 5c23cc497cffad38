"""MakeAnything's asymmetric LoRA: one shared ``lora_A``, one ``lora_B`` per domain.

For each target linear layer of the Flux transformer::

    y = W0 x + sum_i w_i * B_i(A(dropout(x))) * alpha / rank

``A`` (``in -> r``, Kaiming-uniform) is shared by all domains and learns what processes have in
common; ``B_i`` (``r -> out``, zero-initialised, one per domain in an ``nn.ModuleDict``) learns
domain ``i``. ``w`` is the routing (:mod:`procseq.adapters.routing`): one domain, a mix such as
``{"lego": 0.7, "clay": 0.3}`` (MakeAnything's omega mixing), or one domain / mix per sample.

Example::

    add_asymmetric_lora(transformer, ["lego", "clay"], AsymmetricLoRAConfig(rank=16))
    with route(transformer, domains=["lego", "clay"]):   # sample 0 lego, sample 1 clay
        out = transformer(hidden_states=x, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from procseq.adapters.routing import (
    DEFAULT_TARGET_MODULES,
    RoutedLoRALinear,
    check_domain_name,
    check_patterns,
    check_rank,
    inject,
    layer_value,
)


@dataclass
class AsymmetricLoRAConfig:
    """Hyper-parameters of an asymmetric LoRA.

    Args:
        rank: shared rank ``r`` of ``A`` and every ``B_i``.
        alpha: scale numerator (``scaling = alpha / rank``); None means ``alpha = rank``.
        dropout: dropout on the input of ``A``.
        target_modules: full-match regexes on module paths (default: attention of both block kinds,
            ``proj_mlp``/``proj_out`` of single blocks).
        rank_pattern: per-layer ranks ``{regex: r}`` (full match on the module path, first match wins).
        alpha_pattern: per-layer alphas ``{regex: alpha}``.
    """

    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_rank(self.rank, self.alpha, self.dropout)
        check_patterns(self.rank_pattern, self.alpha_pattern)
        self.target_modules = tuple(self.target_modules)


class AsymmetricLoRALinear(RoutedLoRALinear):
    """A linear layer with a shared ``lora_A`` and an ``nn.ModuleDict`` ``lora_B`` keyed by domain."""

    kind = "asymmetric"

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0,
                 domains: Sequence[str] = ()) -> None:
        super().__init__(base_layer, rank, alpha, dropout)
        self.lora_B = nn.ModuleDict()
        for name in domains:
            self.add_domain(name)

    def _add_domain(self, name: str) -> None:
        w = self.lora_A.weight
        self.lora_B[name] = nn.Linear(self.rank, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        nn.init.zeros_(self.lora_B[name].weight)

    def _delta(self, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_i w_i B_i(h)`` over the routed domains; `h` ``(batch, ..., r)`` -> ``(batch, ..., out)``."""
        delta = None
        for i in self.active:
            term = self.lora_linear(self.lora_B[self.domain_names[i]], h) * weights[..., i:i + 1]
            delta = term if delta is None else delta + term
        return delta if delta is not None else h.new_zeros(*h.shape[:-1], self.out_features)

    def domain_parameters(self, name: str) -> list[nn.Parameter]:
        """The ``lora_B`` of domain `name`."""
        return list(self.lora_B[name].parameters())

    def merged_lora(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` ``(r, in)`` and ``scaling * sum_i w_i B_i`` ``(out, r)`` for one routing row ``(n_domains,)``."""
        b = sum(float(w) * self.lora_B[d].weight for d, w in zip(self.domain_names, weights) if float(w) != 0.0)
        if isinstance(b, int):  # no domain routed
            b = torch.zeros_like(next(iter(self.lora_B.values())).weight)
        return self.lora_A.weight.detach().clone(), (b * self.scaling).detach()


def add_asymmetric_lora(transformer: nn.Module, domains: Sequence[str],
                        config: AsymmetricLoRAConfig | None = None) -> list[str]:
    """Wrap the target linear layers of `transformer` with :class:`AsymmetricLoRALinear`.

    Base weights are frozen (``requires_grad=False``); adapter parameters are trainable.
    Returns the wrapped module paths. Route with :func:`procseq.adapters.routing.route`.
    """
    config = config or AsymmetricLoRAConfig()
    names = [check_domain_name(d) for d in domains]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"Give a non-empty list of distinct domain names, e.g. ['lego', 'clay']; got {list(domains)}.")
    transformer.requires_grad_(False)

    def make(base: nn.Linear, path: str) -> AsymmetricLoRALinear:
        return AsymmetricLoRALinear(base, int(layer_value(path, config.rank_pattern, config.rank)),
                                    layer_value(path, config.alpha_pattern, config.alpha), config.dropout, names)

    return inject(transformer, make, config.target_modules)
