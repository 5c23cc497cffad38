"""Shared machinery of procseq's multi-domain LoRAs: the wrapper layer, injection and domain routing.

Both adapter kinds (:mod:`procseq.adapters.asymmetric`, :mod:`procseq.adapters.masked`) replace a
target ``nn.Linear`` of the Flux transformer by a :class:`RoutedLoRALinear`, peft-style::

    y = base(x) + delta(lora_A(dropout(x)), routing) * scaling,     scaling = alpha / rank

Routing says which domain(s) each sample of the batch uses. It is a tensor of shape
``(batch or 1, n_domains)`` whose rows hold non-negative weights summing to 1 over the model's known
domains (in :func:`domains` order); a row may sum to less than 1 only for a masked LoRA asked for an
*unseen* domain (its weight then goes to the shared rows alone). The domain is always an explicit
argument (design decision 7), set on the model with :func:`route` / :func:`set_routing`, never read
from a caption. With no routing set, the adapters add nothing.

The wrapper subclasses ``nn.Linear`` (exposing the base layer's ``weight``/``bias``, owning no copy)
so that peft/diffusers can wrap it again: a plain style LoRA loaded with
``FluxPipeline.load_lora_weights`` *after* our adapters applies on top of them (peft's fuse, disable
and unload leave ours in place). The wrapped layer is the attribute ``base``. Adapter parameters are
float32 when the base is float16/bfloat16 (as peft does), else the base dtype; they compute in the
activations' dtype, so a bfloat16 model's activations are never upcast to float32.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import ClassVar, Literal, Union

import torch
from torch import nn

#: Full-match regexes on module paths of ``FluxTransformer2DModel``: attention (image and text
#: streams) of the double blocks; attention q/k/v, ``proj_mlp`` and ``proj_out`` of the single blocks.
DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)",
    r"single_transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v)|proj_mlp|proj_out)",
)

DomainSpec = Union[str, Sequence[str], None]
WeightSpec = Union[Mapping[str, float], Sequence[Mapping[str, float]], torch.Tensor, None]
Unseen = Literal["error", "shared"]

_DOMAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_RESERVED = set(dir(nn.ModuleDict()))


def check_domain_name(name: str) -> str:
    """Return `name` if it can key an ``nn.ModuleDict`` and a safetensors key, else raise ``ValueError``."""
    if not isinstance(name, str) or not _DOMAIN_NAME.fullmatch(name) or name in _RESERVED:
        raise ValueError(
            f"Invalid domain name {name!r}: use letters, digits, '_' or '-', starting with a letter "
            f"(e.g. 'lego', 'clay_sculpture'), and not a torch attribute name such as 'type' or 'keys'."
        )
    return name


def check_patterns(rank_pattern: Mapping[str, int], alpha_pattern: Mapping[str, float]) -> None:
    """Validate per-layer ``{regex: rank}`` / ``{regex: alpha}`` maps (peft's ``rank_pattern``/``alpha_pattern``)."""
    for kind, pattern in (("rank_pattern", rank_pattern), ("alpha_pattern", alpha_pattern)):
        if not isinstance(pattern, Mapping):
            raise ValueError(f"{kind} must be a mapping {{regex: value}}, e.g. {{'single_transformer_blocks.*': 8}}.")
        for key, value in pattern.items():
            try:
                re.compile(key)
            except (re.error, TypeError) as err:
                raise ValueError(f"{kind} key {key!r} is not a regular expression ({err}).") from None
            if kind == "rank_pattern":
                check_rank(value, None, 0.0)
            else:
                check_rank(1, value, 0.0)


def layer_value(path: str, pattern: Mapping[str, float], default: float | None) -> float | None:
    """The value of the first regex of `pattern` that full-matches module `path`, else `default`."""
    for key, value in pattern.items():
        if re.fullmatch(key, path):
            return value
    return default


def check_rank(rank: int, alpha: float | None, dropout: float) -> float:
    """Validate LoRA hyper-parameters; return alpha (defaults to rank)."""
    if not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"rank must be a positive integer (e.g. rank=16), got {rank!r}.")
    alpha = float(rank if alpha is None else alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number (or None for alpha=rank), got {alpha!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    return alpha


class RoutedLoRALinear(nn.Linear):
    r"""A frozen ``nn.Linear`` plus a shared ``lora_A`` and a routed, domain-dependent up-projection.

    Subclasses define :meth:`_delta` (the up-projection of the rank-space activations for a routing),
    :meth:`_add_domain`, :meth:`domain_parameters` and :meth:`merged_lora`.

    Args:
        base_layer: the wrapped linear layer, ``in_features -> out_features``; left untouched.
        rank: LoRA rank ``r``.
        alpha: scale numerator; ``scaling = alpha / rank``.
        dropout: dropout on the input of ``lora_A``.
    """

    kind: ClassVar[str] = "routed"
    supports_unseen: ClassVar[bool] = False

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)  # no weight of our own: `weight`/`bias` are the base layer's
        self.alpha = check_rank(rank, alpha, dropout)
        # Named `base`, not peft's `base_layer`: peft's get_base_layer() follows `base_layer` chains and
        # would then merge into / unload down to the plain Linear, dropping this wrapper.
        self.base = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.rank = rank
        self.scaling = self.alpha / rank
        self.lora_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        w = base_layer.weight
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        self.lora_A = nn.Linear(self.in_features, rank, bias=False, device=w.device, dtype=dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        self.domain_names: list[str] = []
        self.routing: torch.Tensor | None = None  # (batch or 1, n_domains)
        self.active: tuple[int, ...] = ()  # domain indices with a non-zero weight somewhere in the batch
        self.enabled = True

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        return self.base.bias

    def add_domain(self, name: str) -> None:
        """Add a domain; its own parameters start at zero, so it adds nothing beyond what all domains share."""
        if name in self.domain_names:
            raise ValueError(f"Domain {name!r} already exists; pick a new name or route to the existing one.")
        self._add_domain(check_domain_name(name))
        self.domain_names.append(name)

    def set_routing(self, weights: torch.Tensor | None) -> None:
        """Route by `weights` of shape ``(batch or 1, n_domains)`` (see :func:`resolve_routing`); None = off."""
        if weights is None:
            self.routing, self.active = None, ()
            return
        self.routing = weights.to(self.lora_A.weight.device)
        self.active = tuple(int(i) for i in torch.nonzero(weights.abs().sum(0)).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(batch, ..., in_features)`` -> ``(batch, ..., out_features)``."""
        result = self.base(x)
        if not self.enabled or self.routing is None:
            return result
        weights = self.routing
        if weights.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"Routing was set for {weights.shape[0]} samples but the batch has {x.shape[0]}; route one "
                f"domain per sample (domains=[...] of length {x.shape[0]}) or a single domain for all."
            )
        dtype = self.lora_compute_dtype(x)
        h = self.lora_linear(self.lora_A, self.lora_dropout(x.to(dtype)))  # (batch, ..., rank)
        weights = weights.to(dtype).view(weights.shape[0], *([1] * (x.dim() - 2)), weights.shape[1])
        delta = self._delta(h, weights)
        return result + (delta * self.scaling).to(result.dtype)

    def lora_compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The dtype the adapter computes in: a half-precision input's own (the float32 adapter weights are cast
        to it, so no activation is upcast; their gradients stay float32), else the adapter weights' dtype."""
        return x.dtype if x.dtype in (torch.float16, torch.bfloat16) else self.lora_A.weight.dtype

    @staticmethod
    def lora_linear(layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        """``layer(h)`` with the layer's weight cast to ``h``'s dtype (differentiable; a no-op when they agree)."""
        return nn.functional.linear(h, layer.weight.to(h.dtype), None if layer.bias is None else layer.bias.to(h.dtype))

    # -- subclass interface -------------------------------------------------------------------
    def _add_domain(self, name: str) -> None:
        raise NotImplementedError

    def _delta(self, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``h`` ``(batch, ..., rank)``, ``weights`` ``(batch or 1, 1.., n_domains)`` -> ``(batch, ..., out)``."""
        raise NotImplementedError

    def domain_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters that only domain `name` trains (beyond those every domain trains)."""
        raise NotImplementedError

    def merged_lora(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A plain LoRA ``(A (r', in), B (out, r'))`` with ``B @ A`` = the routed update (scaling folded in).

        `weights` has shape ``(n_domains,)``: one routing row.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"kind={self.kind}, rank={self.rank}, alpha={self.alpha}, domains={self.domain_names}"


# -- model-level functions ----------------------------------------------------------------------


Slot = tuple[str, nn.Module, str, "RoutedLoRALinear"]
_SLOTS: "weakref.WeakKeyDictionary[nn.Module, list[Slot]]" = weakref.WeakKeyDictionary()


def adapter_slots(model: nn.Module) -> list[Slot]:
    """Where every procseq adapter layer of `model` sits: ``(path, parent, attribute, layer)``.

    Remembered per model and checked on each use (every layer still at its path), so a call does not walk the
    model's modules again; a layer moved since (peft wrapped it or an ancestor, a LoRA pass swapped it, the adapters
    were removed or bypassed) fails the check and the model is walked again. :func:`inject` forgets the model.
    """
    cached = _SLOTS.get(model)
    if cached and all(_module_at(model, path) is layer for path, _, _, layer in cached):
        return cached
    found = list(_walk_slots(model, "", set()))
    if found and all(parent is not model for _, parent, _, _ in found):  # a value holding its key would never go
        _SLOTS[model] = found
    else:
        _SLOTS.pop(model, None)
    return found


def _module_at(model: nn.Module, path: str) -> nn.Module | None:
    """The module at `path` through the children themselves (as ``named_modules`` names them; no ``__getattr__``,
    which a wrapper such as FSDP forwards to the module it wraps), or None."""
    module: nn.Module | None = model
    for part in path.split("."):
        module = module._modules.get(part) if module is not None else None
    return module


def _walk_slots(module: nn.Module, prefix: str, seen: set[int]) -> Iterator[Slot]:
    """The adapter layers under `module` in ``named_modules`` order (each module once), with their parents."""
    for attr, child in module._modules.items():
        if child is None or id(child) in seen:
            continue
        seen.add(id(child))
        if isinstance(child, RoutedLoRALinear):
            yield prefix + attr, module, attr, child
        yield from _walk_slots(child, f"{prefix}{attr}.", seen)


def adapter_layers(model: nn.Module) -> dict[str, RoutedLoRALinear]:
    """All procseq adapter layers of `model`, keyed by module path (e.g. ``transformer_blocks.0.attn.to_q``).

    A layer that peft wrapped again (a style LoRA on the same module) keeps its own path, without
    peft's ``.base_layer`` suffix.
    """
    return {path.removesuffix(".base_layer"): layer for path, _, _, layer in adapter_slots(model)}


def require_adapters(model: nn.Module) -> dict[str, RoutedLoRALinear]:
    """:func:`adapter_layers`, raising ``ValueError`` with the fix when there are none."""
    layers = adapter_layers(model)
    if not layers:
        raise ValueError(
            "The model has no procseq adapters; add them first with add_asymmetric_lora(...) or "
            "add_masked_lora(...), or load a file with load_adapters(...)."
        )
    return layers


def inject(model: nn.Module, make: Callable[[nn.Linear, str], RoutedLoRALinear],
           target_modules: Sequence[str]) -> list[str]:
    """Replace every ``nn.Linear`` of `model` whose path full-matches a regex in `target_modules`.

    `make(base_layer, path) -> RoutedLoRALinear` builds each wrapper. Returns the replaced paths.
    """
    if adapter_layers(model):
        raise ValueError("The model already has procseq adapters; add domains with add_domain(model, name) instead.")
    patterns = [re.compile(p) for p in target_modules]
    targets: list[str] = []
    for name, module in model.named_modules():
        if not any(p.fullmatch(name) for p in patterns):
            continue
        if hasattr(module, "base_layer"):  # a peft layer
            raise ValueError(
                f"{name} already carries a peft LoRA; add procseq adapters before loading style LoRAs "
                f"(load_lora_weights), or unload them first (pipe.unload_lora_weights())."
            )
        if isinstance(module, nn.Linear) and not isinstance(module, RoutedLoRALinear):
            targets.append(name)
    if not targets:
        raise ValueError(
            f"No nn.Linear matched target_modules={list(target_modules)}; use full-match regexes on the Flux "
            f"module paths, e.g. r'transformer_blocks\\.\\d+\\.attn\\.to_q' (see DEFAULT_TARGET_MODULES)."
        )
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(getattr(parent, child), name))
    _SLOTS.pop(model, None)
    return targets


def remove_adapters(model: nn.Module) -> list[str]:
    """Put the original linear layers back (adapter weights are discarded); returns the restored paths."""
    restored = []
    for name, module in list(model.named_modules()):
        if isinstance(module, RoutedLoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.base)
            restored.append(name.removesuffix(".base_layer"))
    return restored


def domains(model: nn.Module) -> list[str]:
    """The model's known adapter domains, in routing-column order."""
    return list(next(iter(require_adapters(model).values())).domain_names)


def add_domain(model: nn.Module, name: str) -> None:
    """Add domain `name` to every adapter layer; clears the current routing."""
    for layer in require_adapters(model).values():
        layer.add_domain(name)
        layer.set_routing(None)


def resolve_routing(known: Sequence[str], domains: DomainSpec = None, weights: WeightSpec = None,
                    unseen: Unseen = "error") -> torch.Tensor:
    """Turn a domain request into a routing tensor of shape ``(batch or 1, len(known))``.

    Exactly one of:
      * ``domains="lego"``: one domain for the whole batch;
      * ``domains=["lego", "clay"]``: one domain per sample (per-sample routing);
      * ``weights={"lego": 0.7, "clay": 0.3}``: one mix for the whole batch (non-negative, sum 1);
      * ``weights=[{...}, {...}]``: one mix per sample;
      * ``weights=tensor`` of shape ``(n_domains,)`` or ``(batch, n_domains)``, columns in `known` order.

    `unseen="shared"` lets names outside `known` through with no domain weight (masked LoRA: the
    sample then uses the shared rows only); with ``"error"`` they raise ``ValueError``.
    """
    if (domains is None) == (weights is None):
        raise ValueError("Pass exactly one of domains= (e.g. 'lego' or ['lego', 'clay']) or weights= "
                         "(e.g. {'lego': 0.7, 'clay': 0.3}).")
    if isinstance(weights, torch.Tensor):
        table = weights.detach().float().cpu()
        if table.dim() == 1:
            table = table[None]
        if table.dim() != 2 or table.shape[1] != len(known):
            raise ValueError(f"A weight tensor must have shape (n_domains,) or (batch, n_domains) with "
                             f"n_domains={len(known)} columns in the order {list(known)}; got {tuple(weights.shape)}.")
        rows = [dict(zip(known, r.tolist())) for r in table]
    elif domains is not None:
        names = [domains] if isinstance(domains, str) else list(domains)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"domains must be a name or a non-empty list of names, got {domains!r}.")
        rows = [{n: 1.0} for n in names]
    else:
        rows = [dict(weights)] if isinstance(weights, Mapping) else [dict(w) for w in weights]  # type: ignore
        if not rows:
            raise ValueError("weights must be a mapping like {'lego': 0.7, 'clay': 0.3} or a non-empty list of them.")
    index = {n: i for i, n in enumerate(known)}
    table = torch.zeros(len(rows), len(known))
    for b, row in enumerate(rows):
        values = list(row.values())
        if not values or any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"Domain weights must be finite and non-negative, got {row}.")
        total = sum(values)
        if abs(total - 1.0) > 1e-4:
            raise ValueError(f"Domain weights must sum to 1, got {row} (sum {total:.4g}); divide each by "
                             f"their sum, e.g. {{k: v / {total:.4g} for k, v in weights.items()}}.")
        for name, value in row.items():
            if name in index:
                table[b, index[name]] += value
            elif unseen != "shared":
                raise ValueError(f"Unknown domain {name!r}; known domains: {list(known)}. Add it with "
                                 f"add_domain(model, {name!r}) (and train it), or, for a masked LoRA, "
                                 f"pass unseen='shared' to use the shared rows only.")
    return table


def set_routing(model: nn.Module, domains: DomainSpec = None, weights: WeightSpec = None,
                unseen: Unseen = "error") -> torch.Tensor:
    """Route every adapter layer of `model` (see :func:`resolve_routing`); returns the routing tensor."""
    layers = require_adapters(model)
    if unseen == "shared" and not all(layer.supports_unseen for layer in layers.values()):
        raise ValueError("unseen='shared' needs a masked LoRA (shared rows); an asymmetric LoRA has no "
                         "domain-free output: add_domain(...) and train it, or route to a known domain.")
    if unseen not in ("error", "shared"):
        raise ValueError(f"unseen must be 'error' or 'shared', got {unseen!r}.")
    table = resolve_routing(next(iter(layers.values())).domain_names, domains, weights, unseen)
    for layer in layers.values():
        layer.set_routing(table)
    return table


def clear_routing(model: nn.Module) -> None:
    """Remove routing: the adapters add nothing until routed again."""
    for layer in require_adapters(model).values():
        layer.set_routing(None)


@contextmanager
def route(model: nn.Module, domains: DomainSpec = None, weights: WeightSpec = None,
          unseen: Unseen = "error") -> Iterator[torch.Tensor]:
    """Context manager: ``with route(transformer, domains=["lego", "clay"]): ...``; restores the previous routing."""
    layers = require_adapters(model)
    previous = {name: layer.routing for name, layer in layers.items()}
    try:
        yield set_routing(model, domains, weights, unseen)
    finally:
        for name, layer in layers.items():
            layer.set_routing(previous[name])


@contextmanager
def unrouted(model: nn.Module) -> Iterator[None]:
    """Context manager: no routing inside (the adapters add nothing), the previous routing restored after."""
    layers = require_adapters(model)
    previous = {name: layer.routing for name, layer in layers.items()}
    try:
        clear_routing(model)
        yield
    finally:
        for name, layer in layers.items():
            layer.set_routing(previous[name])


@contextmanager
def bypassed(model: nn.Module) -> Iterator[None]:
    """Context manager: the adapters out of the model inside (each parent holds the wrapped base layer again), so an
    unrouted pass runs the bare layers at the base model's speed, with the base model's exact output; put back after
    (also under a peft LoRA that wrapped the base layer meanwhile). A no-op without adapters."""
    found = adapter_slots(model)
    slots = [(parent, attr, child) for _, parent, attr, child in found]
    for parent, attr, child in slots:
        setattr(parent, attr, child.base)
    try:
        yield
    finally:
        for parent, attr, child in slots:
            current = getattr(parent, attr)
            if current is child.base:
                setattr(parent, attr, child)
            elif getattr(current, "base_layer", None) is child.base:  # a peft wrapper put in meanwhile
                current.base_layer = child
        if found and model not in _SLOTS and all(parent is not model for parent, _, _ in slots):
            _SLOTS[model] = found  # remembered again (a walk inside found none); checked on the next use


def set_enabled(model: nn.Module, enabled: bool) -> None:
    """Turn every procseq adapter on or off (off: the exact base output)."""
    for layer in require_adapters(model).values():
        layer.enabled = enabled


def disable(model: nn.Module) -> None:
    """Switch the adapters off: every wrapped layer returns exactly its base layer's output."""
    set_enabled(model, False)


def enable(model: nn.Module) -> None:
    """Switch the adapters back on."""
    set_enabled(model, True)


@contextmanager
def disabled(model: nn.Module) -> Iterator[None]:
    """Context manager: the adapters are off inside, restored to their previous state after."""
    layers = require_adapters(model)
    previous = {name: layer.enabled for name, layer in layers.items()}
    try:
        set_enabled(model, False)
        yield
    finally:
        for name, layer in layers.items():
            layer.enabled = previous[name]


def trainable_parameters(model: nn.Module, domains_present: Sequence[str], train_shared: bool = True
                         ) -> list[nn.Parameter]:
    """Parameters to optimise for a batch with `domains_present`: every ``lora_A`` (shared) plus the
    domain-specific parameters of those domains. Sets ``requires_grad`` accordingly on all adapter
    parameters (others frozen); base weights are not touched.

    `train_shared=False` freezes every ``lora_A`` (MakeAnything's option: keep the shared A, tune only the
    domains' B).
    """
    layers = require_adapters(model)
    known = next(iter(layers.values())).domain_names
    unknown = [d for d in domains_present if d not in known]
    if unknown:
        raise ValueError(f"Unknown domains {unknown}; known: {known}. Add them with add_domain(model, name).")
    chosen: list[nn.Parameter] = []
    for layer in layers.values():
        for name, param in layer.named_parameters():
            if not name.startswith("base."):
                param.requires_grad_(False)
        params = list(layer.lora_A.parameters()) if train_shared else []
        for d in domains_present:
            params += [p for p in layer.domain_parameters(d) if all(p is not q for q in params)]
        for p in params:
            p.requires_grad_(True)
        chosen += params
    return chosen
