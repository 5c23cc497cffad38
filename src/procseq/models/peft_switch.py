"""Switching named peft adapters of a model, leaving every other adapter as it was: the one place procseq touches
peft's per-layer state.

peft and diffusers switch adapters model-wide: ``set_adapters(names, weights)`` makes `names` the only active
adapters of *every* layer and resets their scales, ``disable_adapters()`` turns all of them off. procseq's own LoRAs
(:mod:`procseq.conditioning.loras`) must go on and off per pass while a user's peft adapters keep their per-layer
active state and their ``set_adapters`` scales, so this module switches per layer with the layer's public
``BaseTunerLayer.set_adapter`` (which does not touch ``scaling``), restoring ``requires_grad`` (which it changes).

It also parks an adapter: its peft wrapper layers taken out of the model (each parent gets its base layer back) and
kept aside, so a LoRA that is off costs nothing, then put back in a few microseconds per layer instead of being
injected again (:func:`park` / :func:`unpark`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


def tuner_layers(model: torch.nn.Module) -> list[Any]:
    """The model's peft tuner layers (empty without peft adapters)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def layer_adapters(layer: Any) -> set[str]:
    """The adapters a tuner layer holds (its ``lora_A``... keys)."""
    return {k for name in layer.adapter_layer_names for k in getattr(layer, name).keys()}


@contextmanager
def grads_kept(model: torch.nn.Module) -> Iterator[None]:
    """Within, peft may change adapter parameters' ``requires_grad`` (its ``set_adapter`` does); restored after."""
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    flags = [p.requires_grad for p in lora]
    try:
        yield
    finally:
        for p, f in zip(lora, flags):
            p.requires_grad_(f)


def set_active(model: torch.nn.Module, on: Collection[str] = (), off: Collection[str] = ()) -> list[tuple[Any, list[str]]]:
    """In every layer holding one of them: adapters `on` active (appended after the layer's others) and `off`
    inactive; every other adapter keeps its per-layer state and scale. Returns ``[(layer, its active list before)]``
    for :func:`restore_active`."""
    named = set(on) | set(off)
    before = []
    with grads_kept(model):
        for m in tuner_layers(model):
            held = layer_adapters(m) & named
            if not held:
                continue
            current = list(m.active_adapters)
            wanted = [n for n in current if n not in off] + [n for n in on if n in held and n not in current]
            if wanted != current:
                before.append((m, current))
                m.set_adapter(wanted)
    return before


def restore_active(model: torch.nn.Module, before: Sequence[tuple[Any, list[str]]]) -> None:
    """Each layer's active list exactly as :func:`set_active` found it (its order sets the order of the sum)."""
    if not before:
        return
    with grads_kept(model):
        for m, active in before:
            m.set_adapter(active)


def set_adapters_active(transformer: Any, names: Sequence[str], on: bool) -> None:
    """Add the peft adapters `names` to (or take them out of) every layer's active set; other adapters, their
    ``set_adapters`` scales and every ``requires_grad`` stay as they were."""
    set_active(transformer, on=names if on else (), off=() if on else names)


def _has_adapters(model: Any) -> bool:
    return bool(getattr(model, "_hf_peft_config_loaded", False)) and bool(getattr(model, "peft_config", None))


@contextmanager
def adapters_enabled(transformer: Any, enabled: bool, names: Sequence[str] | None = None) -> Iterator[None]:
    """Run with the transformer's peft adapters `names` (all of them when None) on or off.

    Only the named adapters change: with ``names=("known_frames",)`` a user's style LoRA stays as it was. Unlike a
    bare ``disable_adapters()``, the adapter parameters keep their ``requires_grad``, so a LoRA used in the condition
    pass still gets gradients through the cached keys/values while the main pass runs without it. A no-op without
    adapters.
    """
    if not _has_adapters(transformer):
        yield
        return
    if names is None:  # every adapter: diffusers' public switch, flags kept
        layers = tuner_layers(transformer)
        was_enabled = not any(m.disable_adapters for m in layers)
        if enabled == was_enabled:
            yield
            return
        with grads_kept(transformer):
            transformer.enable_adapters() if enabled else transformer.disable_adapters()
        try:
            yield
        finally:
            with grads_kept(transformer):
                transformer.enable_adapters() if was_enabled else transformer.disable_adapters()
        return
    before = set_active(transformer, on=names if enabled else (), off=() if enabled else names)
    try:
        yield
    finally:
        restore_active(transformer, before)


@dataclass
class Parked:
    """An adapter's peft wrappers taken out of the model: ``(parent, attribute, wrapper)`` per layer, and its config."""

    name: str
    config: Any
    slots: list[tuple[torch.nn.Module, str, torch.nn.Module]] = field(default_factory=list)


def _slots(model: torch.nn.Module, name: str) -> list[tuple[torch.nn.Module, str, Any]]:
    """``(parent, attribute, layer)`` of every tuner layer holding adapter `name`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found = []
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, BaseTunerLayer) and name in layer_adapters(child):
                found.append((parent, attr, child))
    return found


def park(model: Any, name: str) -> Parked | None:
    """Take adapter `name`'s wrapper layers out of `model` (each parent gets the wrapped layer back) and its entry
    out of ``peft_config``; None (nothing changed) when a layer also holds another adapter, or the adapter is not
    there: delete it then (``delete_adapters``)."""
    config = (getattr(model, "peft_config", None) or {}).get(name)
    slots = _slots(model, name)
    if config is None or not slots or any(layer_adapters(layer) != {name} for _, _, layer in slots):
        return None
    for parent, attr, layer in slots:
        setattr(parent, attr, layer.base_layer)
    model.peft_config.pop(name)  # what diffusers' delete_adapters does to the config
    return Parked(name, config, slots)


def _fits(current: Any, layer: Any) -> bool:
    """Whether a parked wrapper `layer` can go back where `current` is now: its base layer, or another view of the
    same weight (procseq's multi-domain adapter around it, or taken out; never another peft wrapper)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    base = layer.base_layer
    return current is base or (not isinstance(current, BaseTunerLayer) and getattr(current, "weight", None) is not None
                               and getattr(current, "weight", None) is getattr(base, "weight", None))


def unpark(model: Any, parked: Parked) -> bool:
    """Put parked wrappers back (on their base layers' device, around what holds the weight now); False (nothing
    changed) when the model changed under them (a layer re-wrapped by peft or replaced since, or peft unloaded), so
    the adapter must be injected afresh."""
    if not getattr(model, "_hf_peft_config_loaded", False) or not isinstance(getattr(model, "peft_config", None), dict):
        return False
    if parked.name in model.peft_config:
        return False
    if not all(_fits(getattr(parent, attr), layer) for parent, attr, layer in parked.slots):
        return False
    for parent, attr, layer in parked.slots:
        current = getattr(parent, attr)
        if current is not layer.base_layer:
            layer.base_layer = current
        weight = getattr(current, "weight", None)
        if weight is not None:
            layer.to(weight.device)
        setattr(parent, attr, layer)
    model.peft_config[parked.name] = parked.config
    return True


def remove_empty_wrappers(model: torch.nn.Module) -> None:
    """Replace every tuner layer that holds no adapter any more (after ``delete_adapters``) by its base layer."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for parent in list(model.modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, BaseTunerLayer) and not layer_adapters(child):
                setattr(parent, attr, child.base_layer)


__all__ = ["Parked", "adapters_enabled", "grads_kept", "layer_adapters", "park", "remove_empty_wrappers",
           "restore_active", "set_active", "set_adapters_active", "tuner_layers", "unpark"]
