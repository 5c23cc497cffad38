"""ProcessMaker's masked LoRA: one LoRA whose rows are partly shared, partly owned by a domain.

One ``lora_A`` (``in -> r``) and one ``lora_B`` (``r -> out``, zero-initialised). A per-domain binary
mask over some axis of the LoRA splits it into rows every domain uses and rows one domain owns.
How many rows a domain owns (``band=``):

* ``"per-domain"`` (as ProcessMaker specifies it; the default of ``procseq train adapter``): every domain
  owns its own ``block = round(domain_fraction * size)`` rows (30% each by default), disjoint from the
  others'; ``shared = size - block * max_domains`` rows are shared (so ``max_domains * domain_fraction``
  must stay <= 1: three domains at 30% leave 10% shared).
* ``"split"`` (procseq's first version, the class default, and every adapter file written before the
  option): one band of ``round(domain_fraction * size)`` rows cut into ``max_domains`` blocks,
  ``block = floor(round(domain_fraction * size) / max_domains)``, ``shared = size - block * max_domains``.

Two axes are offered (``mask=``):

* ``"rank"`` (the class default, procseq's first version): the ``r`` *rank* rows (rows of ``A`` = columns
  of ``B``); rows ``[0, shared)`` are shared and domain ``k`` owns ``[shared + k*block, shared + (k+1)*block)``.
* ``"rows"`` (as ProcessMaker specifies it; the default of ``procseq train adapter``): the layer's *output*
  rows (rows of ``B`` and of the update ``B A``). With ``row_mask="fixed"`` the first ``block * max_domains``
  rows are domain-specific (domain ``k`` owns ``[k*block, (k+1)*block)``), the rest shared. With ``row_mask="learned"`` each domain still owns
  exactly ``block`` rows, disjoint from the others', but *which* rows is learned: ``lora_row_logits``
  ``(max_domains, out)`` (initialised to the fixed layout: 0.1 on its rows, 0 elsewhere) are read
  greedily, domain by domain, as top-``block`` choices among the rows still free; the forward uses the
  hard masks and the logits get straight-through gradients from ``sigmoid(logits)``.

For a sample routed to domain ``d`` the mask is ``m_d = shared + rows_of_d``::

    rank:  y = W0 x + B(m_d * A(dropout(x))) * alpha / rank
    rows:  y = W0 x + m_d * B(A(dropout(x))) * alpha / rank

so gradients of domain ``d`` never reach another domain's rows (they are multiplied by an exact 0). A
mix ``{d: w_d}`` uses ``m = shared + sum_d w_d rows_of_d`` (the weighted sum of the per-domain outputs).
A domain the adapter never saw, routed with ``unseen="shared"``, uses the shared rows only: the domain
mask is removed. Rank and alpha may differ per layer (``rank_pattern`` / ``alpha_pattern``, as in peft's
``LoraConfig``: full-match regexes on module paths, the first match wins).

Note for training: rows outside the routed domains get zero gradient, but an optimizer with weight
decay still shrinks them; use ``weight_decay=0`` for adapter parameters to keep them frozen exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from procseq.adapters.routing import (
    DEFAULT_TARGET_MODULES,
    RoutedLoRALinear,
    check_domain_name,
    check_rank,
    check_patterns,
    inject,
    layer_value,
)

MASK_AXES = ("rank", "rows")
BANDS = ("per-domain", "split")
LOGIT_MARGIN = 0.1  # initial logit of a learned mask's fixed-layout rows (0 elsewhere)
ROW_MASKS = ("fixed", "learned")


def masked_layout(rank: int, domain_fraction: float, max_domains: int, what: str = "rank",
                  band: str = "split") -> tuple[int, int]:
    """``(shared, block)``: number of shared rows and rows per domain block of `rank` rows; ``ValueError`` if empty.

    `what` names the rows in the error (``"rank"`` or ``"out_features"``); `band` is ``"split"`` (one band of
    ``domain_fraction`` cut among the domains) or ``"per-domain"`` (each domain its own ``domain_fraction``).
    """
    if not 0.0 < domain_fraction < 1.0:
        raise ValueError(f"domain_fraction must be in (0, 1) (ProcessMaker uses 0.3), got {domain_fraction!r}.")
    if not isinstance(max_domains, int) or max_domains < 1:
        raise ValueError(f"max_domains must be a positive integer, got {max_domains!r}.")
    check_band(band)
    if band == "per-domain":
        if max_domains * domain_fraction > 1.0 + 1e-9:
            raise ValueError(f"band='per-domain' gives each of {max_domains} domains its own domain_fraction="
                             f"{domain_fraction} of the rows, more than all of them; use domain_fraction <= "
                             f"{1 / max_domains:.3g}, fewer domains per adapter, or band='split'.")
        block = round(domain_fraction * rank)
        block = min(block, rank // max_domains)  # rounding up must not take more rows than there are
    else:
        block = round(domain_fraction * rank) // max_domains
    if block < 1:
        need = math.ceil(max_domains / domain_fraction)
        fix = f"use rank >= {need}" if what == "rank" else "target larger layers"
        raise ValueError(f"{what}={rank} with domain_fraction={domain_fraction} leaves no row for each of "
                         f"{max_domains} domains; {fix} or a larger domain_fraction.")
    return rank - block * max_domains, block


def check_band(band: str) -> None:
    """Raise ValueError unless `band` is one of :data:`BANDS`."""
    if band not in BANDS:
        raise ValueError(f"band must be 'per-domain' (each domain its own domain_fraction of the rows, ProcessMaker) "
                         f"or 'split' (one band shared out among the domains), got {band!r}.")


@dataclass
class MaskedLoRAConfig:
    """Hyper-parameters of a masked LoRA.

    Args:
        rank: total rank ``r``.
        alpha: scale numerator (``scaling = alpha / rank``); None means ``alpha = rank``.
        dropout: dropout on the input of ``A``.
        domain_fraction: fraction of rows that are domain-specific (default 0.3).
        max_domains: number of domain blocks to reserve; None = the number of initial domains.
        target_modules: full-match regexes on module paths.
        mask: ``"rank"`` (rank rows, the default) or ``"rows"`` (the layer's output rows, ProcessMaker).
        row_mask: with ``mask="rows"``: ``"fixed"`` (the first rows domain-specific) or ``"learned"``.
        band: ``"split"`` (the default: one `domain_fraction` band cut among the domains, procseq's first
            version) or ``"per-domain"`` (each domain its own `domain_fraction` of the rows, ProcessMaker).
        rank_pattern: per-layer ranks ``{regex: r}`` (full match on the module path), overriding `rank`.
        alpha_pattern: per-layer alphas ``{regex: alpha}``, overriding `alpha`.
    """

    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.0
    domain_fraction: float = 0.3
    max_domains: int | None = None
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    mask: str = "rank"
    row_mask: str = "fixed"
    band: str = "split"
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_rank(self.rank, self.alpha, self.dropout)
        if self.mask not in MASK_AXES:
            raise ValueError(f"mask must be 'rank' (rank rows) or 'rows' (output rows), got {self.mask!r}.")
        if self.row_mask not in ROW_MASKS:
            raise ValueError(f"row_mask must be 'fixed' or 'learned', got {self.row_mask!r}.")
        if self.mask == "rank" and self.row_mask != "fixed":
            raise ValueError("row_mask='learned' needs mask='rows' (rank blocks are fixed).")
        check_patterns(self.rank_pattern, self.alpha_pattern)
        check_band(self.band)
        if self.mask == "rank":
            for r in [self.rank, *self.rank_pattern.values()]:
                masked_layout(r, self.domain_fraction, self.max_domains or 1, band=self.band)
        else:  # the fraction's range
            masked_layout(1000, self.domain_fraction, self.max_domains or 1, "out_features", self.band)
        self.target_modules = tuple(self.target_modules)


class MaskedLoRALinear(RoutedLoRALinear):
    """A linear layer with one LoRA whose rank rows or output rows are masked per domain (module docstring)."""

    kind = "masked"
    supports_unseen = True

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0,
                 domain_fraction: float = 0.3, max_domains: int | None = None, domains: Sequence[str] = (),
                 mask: str = "rank", row_mask: str = "fixed", band: str = "split") -> None:
        super().__init__(base_layer, rank, alpha, dropout)
        if mask not in MASK_AXES or row_mask not in ROW_MASKS or (mask == "rank" and row_mask != "fixed"):
            raise ValueError(f"Unsupported mask={mask!r}, row_mask={row_mask!r}; use MaskedLoRAConfig to check them.")
        max_domains = max_domains or max(len(domains), 1)
        self.domain_fraction, self.max_domains, self.mask, self.row_mask = domain_fraction, max_domains, mask, row_mask
        self.band = band
        size = rank if mask == "rank" else self.out_features
        self.shared_rows, self.block = masked_layout(size, domain_fraction, max_domains,
                                                     "rank" if mask == "rank" else "out_features", band)
        first = self.shared_rows if mask == "rank" else 0  # rank: shared rows first; rows: domain rows first
        owner = torch.zeros(max_domains, size, device=base_layer.weight.device)
        for k in range(max_domains):
            owner[k, first + k * self.block: first + (k + 1) * self.block] = 1.0
        self.register_buffer("fixed_owner", owner, persistent=False)
        w = self.lora_A.weight
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        nn.init.zeros_(self.lora_B.weight)
        self.lora_row_logits: nn.Parameter | None = None
        if row_mask == "learned":
            # a small margin over the other rows, so that ownership can move within a few hundred steps
            self.lora_row_logits = nn.Parameter((owner * LOGIT_MARGIN).to(device=w.device, dtype=w.dtype))
        for name in domains:
            self.add_domain(name)

    def _add_domain(self, name: str) -> None:
        if len(self.domain_names) >= self.max_domains:
            raise ValueError(f"All {self.max_domains} domain blocks are taken ({self.domain_names}); create the "
                             f"masked LoRA with MaskedLoRAConfig(max_domains=...) large enough for {name!r}.")

    def ownership(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(hard, soft)``: which domain block owns each masked row, ``(max_domains, size)`` 0/1; `soft` is
        ``sigmoid(lora_row_logits)`` for the straight-through gradient of a learned mask (else None)."""
        if self.lora_row_logits is None:
            return self.fixed_owner, None
        logits = self.lora_row_logits
        taken = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        hard = torch.zeros_like(logits, dtype=torch.float32)
        for k in range(self.max_domains):  # greedy: block k takes its top rows among those still free
            score = logits[k].detach().float().masked_fill(taken, float("-inf"))
            rows = torch.argsort(score, descending=True, stable=True)[: self.block]
            hard[k, rows] = 1.0
            taken[rows] = True
        return hard.to(logits.dtype), torch.sigmoid(logits)

    def owned_rows(self, name: str) -> torch.Tensor:
        """Indices of the rows (rank rows or output rows, per ``mask``) owned by domain `name`."""
        hard, _ = self.ownership()
        return torch.nonzero(hard[self.domain_names.index(name)]).flatten()

    def shared_row_indices(self) -> torch.Tensor:
        """Indices of the rows every domain uses."""
        hard, _ = self.ownership()
        return torch.nonzero(hard.sum(0) == 0).flatten()

    def domain_rows(self, name: str) -> slice:
        """The rows owned by domain `name` as a slice (fixed layouts only)."""
        if self.lora_row_logits is not None:
            raise ValueError("A learned row mask has no fixed slice per domain; use owned_rows(name).")
        first = self.shared_rows if self.mask == "rank" else 0
        start = first + self.domain_names.index(name) * self.block
        return slice(start, start + self.block)

    def row_coefficients(self, weights: torch.Tensor) -> torch.Tensor:
        """Routing ``(..., n_domains)`` -> mask ``(..., size)``: 1 on shared rows, ``w_d`` on d's rows, 0 on the rest.

        The value is the hard mask exactly; a learned mask adds a zero-valued straight-through term.
        """
        hard, soft = self.ownership()
        n = weights.shape[-1]

        def mask(owner: torch.Tensor) -> torch.Tensor:
            return 1.0 - owner.sum(0) + weights @ owner[:n]

        coef = mask(hard.to(weights.dtype))
        if soft is not None and torch.is_grad_enabled():
            s = mask(soft.to(weights.dtype))
            coef = coef + (s - s.detach())
        return coef

    def _delta(self, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The masked up-projection; `h` ``(batch, ..., r)`` -> ``(batch, ..., out)``."""
        if self.mask == "rank":
            return self.lora_linear(self.lora_B, h * self.row_coefficients(weights))
        return self.lora_linear(self.lora_B, h) * self.row_coefficients(weights)

    def domain_parameters(self, name: str) -> list[nn.Parameter]:
        """All of ``lora_B`` (privacy comes from the masks, not from freezing), and a learned mask's logits."""
        extra = [self.lora_row_logits] if self.lora_row_logits is not None else []
        return list(self.lora_B.parameters()) + extra

    def merged_lora(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A plain LoRA for one routing row ``(n_domains,)``: rank mask: the rank rows in use,
        ``A[rows]`` ``(r', in)`` and ``scaling * B[:, rows] * m[rows]`` ``(out, r')``; row mask: ``A`` and
        ``scaling * m[:, None] * B``."""
        with torch.no_grad():
            coef = self.row_coefficients(weights.to(self.lora_A.weight.device, self.lora_A.weight.dtype))
            if self.mask == "rows":
                return self.lora_A.weight.detach().clone(), (self.lora_B.weight * coef[:, None] * self.scaling).detach()
            rows = torch.nonzero(coef).flatten()
            a = self.lora_A.weight[rows].detach().clone()
            b = (self.lora_B.weight[:, rows] * coef[rows] * self.scaling).detach()
        return a, b

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", mask={self.mask}, band={self.band}"
                + (f", row_mask={self.row_mask}" if self.mask == "rows" else ""))


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
    transformer.requires_grad_(False)

    def make(base: nn.Linear, path: str) -> MaskedLoRALinear:
        rank = int(layer_value(path, config.rank_pattern, config.rank))
        alpha = layer_value(path, config.alpha_pattern, config.alpha)
        return MaskedLoRALinear(base, rank, alpha, config.dropout, config.domain_fraction, max_domains, names,
                                config.mask, config.row_mask, config.band)

    return inject(transformer, make, config.target_modules)


def layer_settings(layers: Mapping[str, MaskedLoRALinear]) -> dict:
    """The file metadata of a masked LoRA beyond rank/alpha: fraction, blocks, mask axis and kind, band (a file
    without ``band``, written before the option, is ``split``)."""
    first = next(iter(layers.values()))
    return {"domain_fraction": first.domain_fraction, "max_domains": first.max_domains, "mask": first.mask,
            "row_mask": first.row_mask, "band": first.band}
