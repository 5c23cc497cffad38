"""Take every peft LoRA out of a model and put it back exactly: for saving the base weights.

A model with peft layers injected saves its LoRA keys (``base_layer``, ``lora_A``...) inside the base
weights, which stock diffusers cannot load; unloading the LoRAs first loses them for the rest of the
session (a user's style LoRA silently gone after ``save_pretrained``). :func:`peft_adapters_detached`
does both halves: it records each adapter (config, weights, per-layer scale set by ``set_adapters``,
which are active, whether they were disabled), removes the layers, and restores all of it afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class PeftSnapshot:
    """What :func:`peft_adapters_detached` needs to rebuild a model's peft adapters."""

    configs: dict[str, Any]
    states: dict[str, dict[str, torch.Tensor]]
    scaling: dict[str, dict[str, float]] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    disabled: bool = False


def peft_layers(model: torch.nn.Module) -> dict[str, Any]:
    """The model's peft tuner layers by module name (empty when no peft adapter is injected)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


def snapshot(model: torch.nn.Module) -> PeftSnapshot | None:
    """Record the model's peft adapters (None when it has none)."""
    from peft.utils import get_peft_model_state_dict

    configs = dict(getattr(model, "peft_config", None) or {})
    layers = peft_layers(model)
    if not configs or not layers:
        return None
    states = {name: {k: v.detach().clone() for k, v in get_peft_model_state_dict(model, adapter_name=name).items()}
              for name in configs}
    first = next(iter(layers.values()))
    return PeftSnapshot(configs={k: copy.deepcopy(v) for k, v in configs.items()}, states=states,
                        scaling={name: dict(layer.scaling) for name, layer in layers.items()},
                        active=list(first.active_adapters), disabled=bool(first.disable_adapters))


def restore(model: Any, snap: PeftSnapshot) -> None:
    """Inject the recorded adapters again, with their weights, scales, active set and enabled state."""
    from peft.utils import set_peft_model_state_dict

    with torch.random.fork_rng(devices=[]):  # adapter init draws random numbers; the caller's stream is not ours
        for name, config in snap.configs.items():
            model.add_adapter(copy.deepcopy(config), adapter_name=name)
            set_peft_model_state_dict(model, snap.states[name], adapter_name=name)
    for name, layer in peft_layers(model).items():
        layer.scaling.update(snap.scaling.get(name, {}))
    if snap.active:
        model.set_adapter(snap.active if len(snap.active) > 1 else snap.active[0])
    if snap.disabled:
        model.disable_adapters()


@contextmanager
def peft_adapters_detached(*models: Any) -> Iterator[list[str]]:
    """Inside the block, `models` carry no peft layers; on exit every adapter is back as it was.

    Yields the names of the adapters taken out (all models together, without repeats).
    """
    from diffusers.utils import recurse_remove_peft_layers

    snaps: list[tuple[Any, PeftSnapshot]] = []
    for model in models:
        snap = snapshot(model) if model is not None else None
        if snap is None:
            continue
        recurse_remove_peft_layers(model)
        for attr in ("peft_config", "_hf_peft_config_loaded"):
            if hasattr(model, attr):
                delattr(model, attr) if attr == "peft_config" else setattr(model, attr, None)
        snaps.append((model, snap))
    try:
        yield list(dict.fromkeys(name for _, snap in snaps for name in snap.configs))
    finally:
        for model, snap in snaps:
            restore(model, snap)


__all__ = ["PeftSnapshot", "peft_adapters_detached", "peft_layers", "restore", "snapshot"]
