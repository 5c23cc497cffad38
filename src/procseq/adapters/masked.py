"""ProcessMaker's masked LoRA: one LoRA whose rank rows are partly shared, partly owned by a domain.

One ``lora_A`` (``in -> r``) and one ``lora_B`` (``r -> out``, zero-initialised). The ``r`` rank rows
(rows of ``A`` = columns of ``B``) are split into

* ``shared`` rows, used by every domain, and
* ``max_domains`` disjoint *blocks* of ``block`` rows each, together about ``domain_fraction`` of the
  rank (ProcessMaker: ~30%); the ``k``-th domain added owns the ``k``-th block.

Layout (choice documented here): ``block = floor(round(domain_fraction * r) / max_domains)``,
``shared = r - block * max_domains``, rows ``[0, shared)`` are shared and domain ``k`` owns rows
``[shared + k*block, shared + (k+1)*block)``. Fixed blocks (rather than learned subsets) make the
privacy exact and the file format trivial; ``max_domains`` reserves blocks for domains added later.

For a sample routed to domain ``d`` the rank-space activations are masked by
``m_d = shared_rows + rows_of_d``::

    y = W0 x + B((m_d * A(dropout(x)))) * alpha / rank

so gradients of domain ``d`` reach only the shared rows and ``d``'s rows (every other row is
multiplied by 0). A mix ``{d: w_d}`` uses ``m = shared_rows + sum_d w_d rows_of_d`` (= the
weighted sum of the per-domain outputs, as weights sum to 1). A domain the adapter never saw,
routed with ``unseen="shared"``, uses the shared rows only: the domain mask is removed.

Note for training: rows outside the routed domains get zero gradient, but an optimizer with weight
decay still shrinks them; use ``weight_decay=0`` for adapter parameters to keep them frozen exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from procseq.adapters.routing import DEFAULT_TARGET_MODULES, RoutedLoRALinear, check_domain_name, check_rank, inject


def masked_layout(rank: int, domain_fraction: float, max_domains: int) -> tuple[int, int]:
    """``(shared, block)``: number of shared rows and rows per domain block; raises ``ValueError`` if empty."""
    if not 0.0 < domain_fraction < 1.0:
        raise ValueError(f"domain_fraction must be in (0, 1) (ProcessMaker uses 0.3), got {domain_fraction!r}.")
    if not isinstance(max_domains, int) or max_domains < 1:
        raise ValueError(f"max_domains must be a positive integer, got {max_domains!r}.")
    block = round(domain_fraction * rank) // max_domains
    if block < 1:
        need = math.ceil(max_domains / domain_fraction)
        raise ValueError(f"rank={rank} with domain_fraction={domain_fraction} leaves no row for each of "
                         f"{max_domains} domains; use rank >= {need} or a larger domain_fraction.")
    return rank - block * max_domains, block


@dataclass
class MaskedLoRAConfig:
    """Hyper-parameters of a masked LoRA.

    Args:
        rank: total rank ``r`` (shared + domain rows).
        alpha: scale numerator (``scaling = alpha / rank``); None means ``alpha = rank``.
        dropout: dropout on the input of ``A``.
        domain_fraction: fraction of rows that are domain-specific (default 0.3).
        max_domains: number of domain blocks to reserve; None = the number of initial domains.
        target_modules: full-match regexes on module paths.
    """

    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.0
    domain_fraction: float = 0.3
    max_domains: int | None = None
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES

    def __post_init__(self) -> None:
        check_rank(self.rank, self.alpha, self.dropout)
        masked_layout(self.rank, self.domain_fraction, self.max_domains or 1)
        self.target_modules = tuple(self.target_modules)


class MaskedLoRALinear(RoutedLoRALinear):
    """A linear layer with one LoRA whose rank rows are masked per domain (see module docstring)."""

    kind = "masked"
    supports_unseen = True

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0,
                 domain_fraction: float = 0.3, max_domains: int | None = None, domains: Sequence[str] = ()) -> None:
        super().__init__(base_layer, rank, alpha, dropout)
        max_domains = max_domains or max(len(domains), 1)
        self.domain_fraction, self.max_domains = domain_fraction, max_domains
        self.shared_rows, self.block = masked_layout(rank, domain_fraction, max_domains)
        w = self.lora_A.weight
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        nn.init.zeros_(self.lora_B.weight)
        for name in domains:
            self.add_domain(name)

    def _add_domain(self, name: str) -> None:
        if len(self.domain_names) >= self.max_domains:
            raise ValueError(f"All {self.max_domains} domain blocks are taken ({self.domain_names}); create the "
                             f"masked LoRA with MaskedLoRAConfig(max_domains=...) large enough for {name!r}.")

    def domain_rows(self, name: str) -> slice:
        """The rank rows owned by domain `name`."""
        k = self.domain_names.index(name)
        start = self.shared_rows + k * self.block
        return slice(start, start + self.block)

    def row_coefficients(self, weights: torch.Tensor) -> torch.Tensor:
        """Routing ``(..., n_domains)`` -> rank-row mask ``(..., r)``: 1 on shared rows, ``w_d`` on d's rows."""
        lead = weights.shape[:-1]
        unused = self.rank - self.shared_rows - self.block * weights.shape[-1]
        return torch.cat([weights.new_ones(*lead, self.shared_rows), weights.repeat_interleave(self.block, dim=-1),
                          weights.new_zeros(*lead, unused)], dim=-1)

    def _delta(self, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``B(m * h)`` with the routed row mask ``m``; `h` ``(batch, ..., r)`` -> ``(batch, ..., out)``."""
        return self.lora_B(h * self.row_coefficients(weights))

    def domain_parameters(self, name: str) -> list[nn.Parameter]:
        """All of ``lora_B`` (privacy comes from the row masks, not from freezing)."""
        return list(self.lora_B.parameters())

    def merged_lora(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows in use only: ``A[rows]`` ``(r', in)``, ``scaling * B[:, rows] * m[rows]`` ``(out, r')``."""
        coef = self.row_coefficients(weights.to(self.lora_A.weight.dtype).cpu()).to(self.lora_A.weight.device)
        rows = torch.nonzero(coef).flatten()
        a = self.lora_A.weight[rows].detach().clone()
        b = (self.lora_B.weight[:, rows] * coef[rows] * self.scaling).detach()
        return a, b


def add_masked_lora(transformer: nn.Module, domains: Sequence[str],
                    config: MaskedLoRAConfig | None = None) -> list[str]:
    """Wrap the target linear layers of `transformer` with :class:`MaskedLoRALinear`.

    Base weights are frozen; adapter parameters are trainable. Returns the wrapped module paths.
    """
    config = config or MaskedLoRAConfig()
    names = [check_domain_name(d) for d in domains]
    if len(set(names)) != len(names):
        raise ValueError(f"Domain names must be distinct, got {list(domains)}.")
    max_domains = config.max_domains or len(names)
    if max_domains < 1:
        raise ValueError("Give at least one domain, or MaskedLoRAConfig(max_domains=N) to add them later.")
    if len(names) > max_domains:
        raise ValueError(f"{len(names)} domains but max_domains={max_domains}; raise max_domains.")
    masked_layout(config.rank, config.domain_fraction, max_domains)
    transformer.requires_grad_(False)
    return inject(transformer, lambda base: MaskedLoRALinear(base, config.rank, config.alpha, config.dropout,
                                                             config.domain_fraction, max_domains, names),
                  config.target_modules)
