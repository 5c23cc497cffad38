"""procseq's own LoRAs in one registry: which there are, where a model ships them, in which layout and pass each is on.

======================  ==============================  ==============================================================
kind (peft adapter)     shipped in (metadata)           on in
======================  ==============================  ==============================================================
``known_frames``        ``known_frames/`` (legacy       the known frames' condition pass (grid, regional); the main
                        ``recraft/``), ``known_frames.  pass too for in-place known frames with an ``inplace`` LoRA,
                        json`` (``recraft.json``)       or concat ones with a LoRA trained on both (``main_lora``)
``regional``            ``regional/``, ``regional.json``  both passes of the regional layout
``frame_by_frame``      ``frame_by_frame/`` (with the   both passes of the frame-by-frame layout
                        step embedding), ``frame_by_
                        frame.json``
======================  ==============================  ==============================================================

A pipeline owns one :class:`LoraRegistry` (``pipe.loras``). Loading a LoRA reads and checks its file and keeps its
weights in the registry (:class:`LoadedLora`); the model's own regional and frame-by-frame LoRAs load on first use,
the known-frames one on the first call with known frames (its metadata decides the known mode).
:meth:`LoraRegistry.active` is the one switch: within it exactly the procseq LoRAs a pass wants are on, every other
procseq LoRA off, and a user's own peft adapters keep their state and ``set_adapters`` scales. A LoRA is in the model
only inside the :meth:`~LoraRegistry.active` blocks of the passes that use it: the first puts it in (peft's wrappers
built once, by diffusers' ``load_lora_adapter``), and on exit its wrappers are parked outside the model (each layer
gets its base layer back), to be put back by the next pass in microseconds; so a call that does not use it runs the
bare layers. A LoRA loaded ``resident`` stays in the model instead, off between calls, like an adapter of diffusers'
``load_lora_weights`` that a user can ``set_adapters``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from procseq.attention.processors import CONDITION_ADAPTER
from procseq.conditioning.frames import KnownMode
from procseq.models.peft_switch import (
    Parked,
    grads_kept,
    park,
    remove_empty_wrappers,
    restore_active,
    set_active,
    tuner_layers,
    unpark,
)

Pass = Literal["condition", "main"]
LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class LoraKind:
    """One of procseq's LoRAs: its peft adapter name, where a model ships it and in which layout and pass it is on.

    Args:
        name: the peft adapter name (and the registry's key).
        folders: the folders (in the model folder) it ships in, the first found wins.
        metas: its metadata files, the first found is read.
        passes: layout name -> the passes it is on in (``"condition"``: the known frames' t = 0 pass).
        first_use: the model's own loads on the first pass that wants it (the known-frames LoRA loads earlier, when
            the pipeline resolves the known mode from its metadata).
        label, trainer: how errors name it and the command that trains it.
    """

    name: str
    folders: tuple[str, ...]
    metas: tuple[str, ...]
    passes: dict[str, tuple[Pass, ...]]
    first_use: bool
    label: str
    trainer: str


KNOWN_FRAMES = LoraKind(CONDITION_ADAPTER, ("known_frames", "recraft"), ("known_frames.json", "recraft.json"),
                        {"grid": ("condition",), "regional": ("condition",)}, False, "condition LoRA",
                        "procseq train known-frames")
REGIONAL = LoraKind("regional", ("regional",), ("regional.json",), {"regional": ("condition", "main")}, True,
                    "regional LoRA", "procseq train regional")
FRAME_BY_FRAME = LoraKind("frame_by_frame", ("frame_by_frame",), ("frame_by_frame.json",),
                          {"frame-by-frame": ("condition", "main")}, True, "frame-by-frame LoRA",
                          "procseq train frame-by-frame")
KINDS: dict[str, LoraKind] = {k.name: k for k in (KNOWN_FRAMES, REGIONAL, FRAME_BY_FRAME)}


def known_frames_in_main_pass(meta: dict[str, Any], known_mode: KnownMode | None) -> bool:
    """Whether the condition LoRA (metadata `meta`) is on in the main pass: for in-place known frames with an in-place
    LoRA, and for concat known frames with a concat LoRA trained on both passes (``main_lora``)."""
    mode = meta.get("mode")
    return (known_mode == "inplace" and mode == "inplace") or (
        known_mode == "concat" and mode == "concat" and bool(meta.get("main_lora")))


def shipped_folder(kind: LoraKind, model_folder: str | Path | None) -> Path | None:
    """The folder of `kind` a model ships (holding its ``pytorch_lora_weights.safetensors``), if any."""
    if not model_folder:
        return None
    return next((Path(model_folder) / f for f in kind.folders if (Path(model_folder) / f / LORA_FILE).is_file()), None)


def read_meta(folder: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The first of the metadata files `names` found in `folder`; empty when there is none."""
    for name in names:
        if (folder / name).is_file():
            return dict(json.loads((folder / name).read_text()))
    return {}


@dataclass
class LoadedLora:
    """A LoRA read into the registry: its weights (peft keys without the ``transformer.`` prefix), shape and metadata.

    `extras` holds what a layout keeps beside it (the frame-by-frame step embedding); `parked` its wrappers while
    they are out of the model (:func:`procseq.models.peft_switch.park`).
    """

    kind: LoraKind
    file: Path
    meta: dict[str, Any]
    state: dict[str, torch.Tensor]
    rank: int
    alpha: float
    targets: list[str]
    resident: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    parked: Parked | None = None

    @property
    def folder(self) -> Path:
        """The folder the LoRA came from."""
        return self.file.parent

    def info(self) -> dict[str, Any]:
        """Its metadata with its ``"path"`` (the ``.safetensors`` file)."""
        return {**self.meta, "path": str(self.file)}


def read_lora(kind: LoraKind, path: str | Path, transformer: Any, metas: tuple[str, ...] | None = None) -> LoadedLora:
    """Read a LoRA of `kind` (its folder or its ``.safetensors``) and check that it fits `transformer`
    (``FileNotFoundError`` / ``ValueError`` saying what to pass instead); its metadata from the first of `metas`
    (default: the kind's) found beside it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder, weight = (path, LORA_FILE) if path.is_dir() else (path.parent, path.name)
    file = folder / weight
    hint = f"pass the folder written by `{kind.trainer}` (OUTPUT_DIR/model) or its .safetensors file"
    if not file.is_file():
        raise FileNotFoundError(f"No {kind.label} at {file}; {hint}.")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{file} is not a readable LoRA file ({err}); {hint}.") from err
    state = {k[len("transformer."):]: v for k, v in tensors.items() if k.startswith("transformer.")}
    downs = {k[: -len(".lora_A.weight")]: v for k, v in state.items() if k.endswith(".lora_A.weight")}
    if not downs or len(state) != 2 * len(downs) or any(f"{k}.lora_B.weight" not in state for k in downs):
        raise ValueError(f"{file} holds no transformer LoRA in peft naming (transformer.<layer>.lora_A/lora_B.weight); "
                         f"{hint}.")
    modules = dict(transformer.named_modules())
    for name, down in downs.items():
        layer = modules.get(name)
        if layer is None:
            raise ValueError(f"{file} does not fit this transformer (no layer {name}); it was trained for another model.")
        base = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        up = state[f"{name}.lora_B.weight"]
        want = (getattr(base, "in_features", None), getattr(base, "out_features", None))
        if down.dim() != 2 or up.dim() != 2 or (down.shape[1], up.shape[0]) != want or up.shape[1] != down.shape[0]:
            raise ValueError(f"{file} does not fit this transformer ({name}: lora_A {tuple(down.shape)}, lora_B "
                             f"{tuple(up.shape)} for a layer of {want[0]} -> {want[1]}); it was trained for another model.")
    meta = read_meta(folder, metas or kind.metas)
    rank = int(next(iter(downs.values())).shape[0])
    return LoadedLora(kind, file, meta, state, rank, float(meta.get("alpha", rank)), sorted(downs))


def inject(transformer: Any, lora: LoadedLora) -> None:
    """Put `lora` into `transformer` as peft adapter ``lora.kind.name`` (diffusers' ``load_lora_adapter``, weights
    assigned without a random init, the caller's random stream untouched); each layer's active adapters unchanged
    where it already held some, the new one inactive."""
    device = next(transformer.parameters()).device
    state = {k: v.to(device) for k, v in lora.state.items()}
    config = {"r": lora.rank, "lora_alpha": lora.alpha, "target_modules": list(lora.targets)}
    before = [(m, list(m.active_adapters)) for m in tuner_layers(transformer)]
    with torch.random.fork_rng(devices=[]), grads_kept(transformer):
        transformer.load_lora_adapter(state, prefix=None, adapter_name=lora.kind.name, metadata=config,
                                      low_cpu_mem_usage=True)
        restore_active(transformer, before)  # peft made the new adapter the only active one in every layer
        set_active(transformer, off=[lora.kind.name])


class LoraRegistry:
    """procseq's LoRAs of one pipeline: what is loaded (:class:`LoadedLora` per kind) and the one switch,
    :meth:`active` (see the module docstring). `pipe` gives the transformer and the model folder."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.loaded: dict[str, LoadedLora] = {}

    @property
    def transformer(self) -> Any:
        """The pipeline's transformer."""
        return self.pipe.transformer

    def copy_for(self, pipe: Any) -> LoraRegistry:
        """A registry for `pipe` (sharing this one's transformer) holding what this one has loaded."""
        out = LoraRegistry(pipe)
        out.loaded = dict(self.loaded)
        return out

    def shipped(self, kind: LoraKind) -> Path | None:
        """The folder of `kind` the pipeline's model ships, if any."""
        return shipped_folder(kind, getattr(self.pipe, "model_folder", None))

    def get(self, kind: LoraKind) -> LoadedLora | None:
        """The loaded LoRA of `kind`, if any."""
        return self.loaded.get(kind.name)

    def info(self, kind: LoraKind) -> dict[str, Any] | None:
        """The loaded LoRA's metadata and path (``mode``, ``path``...), or None."""
        lora = self.get(kind)
        return lora.info() if lora is not None else None

    def present(self, kind: LoraKind) -> bool:
        """Whether `kind`'s adapter is in the transformer now."""
        return kind.name in (getattr(self.transformer, "peft_config", None) or {})

    def load(self, kind: LoraKind, path: str | Path | None = None, resident: bool = False,
             metas: tuple[str, ...] | None = None) -> LoadedLora:
        """Read `kind` from `path` (default: the model's own) into the registry, replacing the one loaded before (the
        same file again: the loaded one). `resident`: keep it in the model between calls (off there), as
        ``load_lora_weights`` would; else it enters the model only for the passes that use it."""
        if path is None:
            path = self.shipped(kind)
            if path is None:
                raise FileNotFoundError(f"This model ships no {kind.label}; train one with `{kind.trainer} CONFIG` and "
                                        "pass its folder.")
        current = self.get(kind)
        target = Path(path) / LORA_FILE if Path(path).is_dir() else Path(path)
        if current is not None and current.file.resolve() == target.resolve() and current.resident >= resident:
            return current
        lora = read_lora(kind, path, self.transformer, metas)
        self.unload(kind)
        lora.resident = resident
        self.loaded[kind.name] = lora
        if resident:
            inject(self.transformer, lora)
        return lora

    def unload(self, kind: LoraKind) -> None:
        """Forget `kind`'s LoRA and take it out of the model."""
        lora = self.loaded.pop(kind.name, None)
        if lora is not None and self.present(kind):
            self._remove(lora, keep=False)

    def wanted(self, layout: str, pass_: Pass, known_mode: KnownMode | None = None,
               skip: Collection[str] = ()) -> list[str]:
        """The procseq LoRAs on in `pass_` of `layout` (loading the model's own on first use); `skip`: kinds the
        layout's options turn off."""
        on = []
        for kind in KINDS.values():
            if kind.name in skip:
                continue
            want = pass_ in kind.passes.get(layout, ())
            if kind is KNOWN_FRAMES and pass_ == "main" and layout in kind.passes:
                want = known_frames_in_main_pass((self.info(kind) or {}), known_mode)
            if want and self.get(kind) is None and kind.first_use and self.shipped(kind) is not None:
                self.load(kind)
            if want and self.get(kind) is not None:
                on.append(kind.name)
        return on

    @contextmanager
    def active(self, layout: str, pass_: Pass, known_mode: KnownMode | None = None,
               skip: Collection[str] = ()) -> Iterator[list[str]]:
        """Within: exactly the procseq LoRAs that `pass_` of `layout` wants on (:meth:`wanted`; yields their names),
        every other procseq LoRA off, a user's peft adapters and their scales as they were. On exit each layer's
        active adapters are restored and the LoRAs this block put into the model (not resident) are taken out again,
        so they are in the model only while a pass uses them."""
        on = self.wanted(layout, pass_, known_mode, skip)
        put: list[str] = []
        try:
            for name in on:
                if self._put_in(self.loaded[name]):
                    put.append(name)
            off = [n for n in KINDS if n not in on and self.present(KINDS[n])]  # procseq's names, loaded or not
            before = set_active(self.transformer, on=on, off=off) if on or off else []
            try:
                yield on
            finally:
                restore_active(self.transformer, before)
        finally:
            for name in put:
                lora = self.loaded.get(name)
                if lora is not None and not lora.resident and self.present(lora.kind):
                    self._remove(lora, keep=True)

    def _put_in(self, lora: LoadedLora) -> bool:
        """Make `lora`'s adapter present (its parked wrappers back, else injected afresh); False: it was there."""
        if self.present(lora.kind):
            return False
        parked, lora.parked = lora.parked, None
        if parked is None or not unpark(self.transformer, parked):
            inject(self.transformer, lora)
        return True

    def _remove(self, lora: LoadedLora, keep: bool) -> None:
        """Take `lora`'s adapter out of the model: parked (`keep`, and no layer shares it) or deleted."""
        transformer = self.transformer
        with grads_kept(transformer):
            set_active(transformer, off=[lora.kind.name])  # so that deleting it activates nothing else
            lora.parked = park(transformer, lora.kind.name) if keep else None
            if lora.parked is None:
                transformer.delete_adapters(lora.kind.name)
                remove_empty_wrappers(transformer)


__all__ = ["FRAME_BY_FRAME", "KINDS", "KNOWN_FRAMES", "LORA_FILE", "LoadedLora", "LoraKind", "LoraRegistry", "Pass",
           "REGIONAL", "inject", "known_frames_in_main_pass", "read_lora", "read_meta", "shipped_folder"]
