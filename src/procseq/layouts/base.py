"""The layout interface (DESIGN.md #14): one object per way of arranging a sequence's frames for the model.

A layout turns a :class:`~procseq.conditioning.plan.Plan`, the known frames and its options into what the
transformer reads, for sampling and for training alike:

* :meth:`Layout.prepare` builds the :class:`~procseq.conditioning.sequence.SequenceConditioning` of a generation
  (text with the step captions, position ids, attention state, known frames);
* :meth:`Layout.denoise` runs the sampler over it and returns the frames' latents;
* :meth:`Layout.decode` turns those into frames (and the serpentine grid every layout also returns);
* :meth:`Layout.training_example` builds the same conditioning for corpus sequences whose frames are known, plus
  the flow-matching targets and the loss mask (:class:`LayoutBatch`), so training sees exactly what sampling feeds.

:class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` and :class:`~procseq.training.layouts.LayoutTrainer`
only call these methods; neither branches on a layout's name. A new layout is one new module registered in
:mod:`procseq.layouts`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

import torch
from PIL import Image

from procseq.attention.processors import run_condition_pass
from procseq.conditioning.frames import KnownFrames, KnownMode
from procseq.conditioning.history import added_to_input
from procseq.conditioning.plan import Plan
from procseq.conditioning.sequence import SequenceConditioning
from procseq.conditioning.text import StepText, TextConditioning
from procseq.layout import GridLayout, frames_to_grid

AfterStep = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


class TextEncoder(Protocol):
    """What a layout needs to read text: the pipeline in sampling, the trainer's cached view of it in training."""

    def encode_text(self, prompts: list[str], max_sequence_length: int,
                    prompts_2: list[str] | None = None) -> TextConditioning:
        """Prompts -> T5 tokens ``(B, L, D)``, pooled CLIP ``(B, P)``, text ids ``(L, 3)``."""

    def encode_steps(self, captions: list[str], max_tokens_per_step: int, whole: bool = False,
                     pad: bool = False) -> StepText:
        """One plan's step captions, each encoded alone (:func:`procseq.conditioning.text.encode_steps`)."""


@dataclass
class LayoutInputs:
    """What every layout is built from (sampling and training).

    Args:
        plans: one plan per sequence of the batch (its captions are the step text).
        prompts: the text the model reads per sequence (the prompt with the model's domain phrase).
        frames: frames per sequence; `frame_tokens`: packed tokens per frame side; `frame_size`: its side in pixels
            (sampling; 0 in training, where the frames are latents already).
        max_sequence_length: T5 tokens of the prompt.
        step_tokens: T5 tokens per step caption, every caption padded to it (the model's ``step_tokens``), or None:
            each caption's own length (models trained before step text was padded; the grid then reads no steps).
        known: clean frames at given cells, and `known_mode` how they condition (``concat`` | ``inplace``).
        negative_prompts: the true-CFG negative branch's text (sampling), or None.
        text: the prompt already encoded (``prompt_embeds``), or None to encode `prompts`.
        prompts_2: T5's own text (FluxPipeline's ``prompt_2``), or None.
        joint_attention_kwargs: the caller's extra processor inputs.
        steps_dropped: per sequence, whether its step captions are dropped (training); None: dropped exactly where
            its prompt is empty (caption dropout drops both).
        grid_step_text: the model's ``grid_step_text`` (False: its grid was trained on the prompt alone, the other
            layouts on the captions); None: the grid reads the captions whenever `step_tokens` is set.
    """

    plans: list[Plan]
    prompts: list[str]
    frames: int
    frame_tokens: int
    max_sequence_length: int
    frame_size: int = 0
    step_tokens: int | None = None
    known: KnownFrames | None = None
    known_mode: KnownMode = "concat"
    negative_prompts: list[str] | None = None
    text: TextConditioning | None = None
    prompts_2: list[str] | None = None
    joint_attention_kwargs: dict[str, Any] = field(default_factory=dict)
    steps_dropped: list[bool] | None = None
    grid_step_text: bool | None = None

    @property
    def batch(self) -> int:
        """Sequences in the batch."""
        return len(self.prompts)


@dataclass
class Sampler:
    """How to integrate: Euler steps, guidance, the initial noise and the per-step hook (resolved by the pipeline).

    Args:
        num_inference_steps: denoising steps; `guidance_scale`: the distilled guidance value.
        true_cfg_scale: true CFG (> 1 runs the negative branch).
        generator: per-sequence generators (or one) for the initial noise; `latents`: the noise itself.
        autocast_dtype: run the transformer under autocast in this dtype.
        batch_cfg: both CFG branches in one batch (None: where safe; :func:`~procseq.layouts.sampling.denoise`).
        after_step: ``fn(i, t, latents) -> latents`` after every step (progress, diffusers' callback).
        cache_condition: the known frames' condition pass once (True) or before every step (the same output).
    """

    num_inference_steps: int
    guidance_scale: float
    true_cfg_scale: float = 1.0
    generator: torch.Generator | list[torch.Generator] | None = None
    latents: torch.Tensor | None = None
    autocast_dtype: torch.dtype | None = None
    batch_cfg: bool | None = None
    after_step: AfterStep | None = None
    cache_condition: bool = True

    def generators(self, n: int) -> list[torch.Generator | None]:
        """One generator per sequence (``ValueError`` when a list of another length was given)."""
        gens = self.generator if isinstance(self.generator, list) else [self.generator] * n
        if len(gens) != n:
            raise ValueError(f"Pass one generator per sequence ({n}), or a single one; got {len(gens)}.")
        return gens


@dataclass
class Draws:
    """The random draws of one training batch, independent of how the batch is split over processes or layouts.

    Args:
        shared: the same on every process: what the whole batch shares (a frame index, a history size, a known set).
        items: one generator per sequence, seeded from its place in the global batch: its noise and its time.
        timestep: draws one time in [0, 1] from a generator (the run's timestep scheme).
    """

    shared: torch.Generator
    items: list[torch.Generator]
    timestep: Callable[[torch.Generator], float]

    def noise(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Gaussian noise ``(B, *shape)``, each sequence's from its own generator."""
        return torch.stack([torch.randn(shape, generator=g) for g in self.items]).to(like)

    def times(self, like: torch.Tensor) -> torch.Tensor:
        """One time per sequence ``(B,)``."""
        return torch.tensor([float(self.timestep(g)) for g in self.items]).to(like)


@dataclass
class LayoutBatch:
    """One training batch in a layout's token order: the model inputs at ``x_t`` and the flow-matching target.

    Args:
        x0: clean packed latents ``(B, seq, 4C)``; `noise` the same shape; `t` ``(B,)`` in [0, 1].
        text: the text the model reads ``(B, L, D)``; `img_ids` ``(seq, 3)``.
        attention: processor inputs (a region mask...); `loss_mask` ``(seq,)``, true where the loss applies.
        known: clean frames conditioning the batch and `known_mode` how; `known_cells` the cells of the batch's
            token order (for ``inplace``), `known_ids` the known tokens' position ids (for ``concat``).
        input_addition: added to the transformer's input tokens (Loom's step embedding), ``(B or 1, seq, 4C)``.
        history_addition: added to the condition pass's tokens (the history frames' step embeddings).
        layout: the layout's name (for logs); `info`: what the layout drew (frame by frame: the frame, its history).
    """

    x0: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor
    text: TextConditioning
    img_ids: torch.Tensor
    attention: dict[str, Any] = field(default_factory=dict)
    loss_mask: torch.Tensor | None = None
    known: KnownFrames | None = None
    known_mode: KnownMode = "inplace"
    known_cells: GridLayout | None = None
    known_ids: torch.Tensor | None = None
    input_addition: Callable[[], torch.Tensor | None] | None = None
    history_addition: Callable[[], torch.Tensor | None] | None = None
    layout: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def x_t(self) -> torch.Tensor:
        """The noised latents ``(1 - t) x0 + t noise``, known cells clean in ``inplace`` mode."""
        t = self.t.view(-1, *([1] * (self.x0.dim() - 1))).to(self.x0)
        x = (1 - t) * self.x0 + t * self.noise
        if self.known is not None and self.known_mode == "inplace" and self.known_cells is not None:
            x = self.known.overwrite(x, self.known_cells)
        return x


def batch_velocity(model: Any, batch: LayoutBatch, pooled_empty: torch.Tensor, guidance: torch.Tensor | None,
                   autocast: Callable[[], Any] | None = None, condition_lora: bool = False,
                   unwrapped: Any = None) -> torch.Tensor:
    """The transformer's velocity ``(B, seq, 4C)`` for a :class:`LayoutBatch` at ``x_t``: the known frames' t = 0
    condition pass first in ``concat`` mode (its K/V handed to the main pass; the condition LoRA on in it when
    `condition_lora`), the layout's input additions on.

    Args:
        model: the transformer to call for the main pass (a ``DistributedDataParallel`` wrapper in training).
        autocast: a factory of the autocast context (e.g. ``accelerator.autocast``), or None.
        unwrapped: the transformer itself, when `model` wraps it (hooks and the condition pass use it).
    """
    from contextlib import nullcontext

    amp = autocast if autocast is not None else nullcontext
    inner = unwrapped if unwrapped is not None else model
    attention = dict(batch.attention)
    if batch.known is not None and batch.known_mode == "concat" and batch.known_ids is not None:
        history = batch.history_addition() if batch.history_addition is not None else None
        tokens = batch.known.tokens().to(batch.x0)
        with amp(), added_to_input(inner, history):
            kv = run_condition_pass(inner, tokens, batch.known_ids.to(tokens), pooled_empty.to(batch.x0), guidance,
                                    lora=condition_lora)
        attention.update(kv.attention_kwargs("use"))
    addition = batch.input_addition() if batch.input_addition is not None else None
    with amp(), added_to_input(inner, addition):
        return model(hidden_states=batch.x_t, timestep=batch.t, guidance=guidance,
                     pooled_projections=batch.text.pooled_prompt_embeds, encoder_hidden_states=batch.text.prompt_embeds,
                     txt_ids=batch.text.text_ids, img_ids=batch.img_ids, joint_attention_kwargs=attention or None,
                     return_dict=False)[0]


class Layout(ABC):
    """A way of arranging a sequence's frames for the transformer (see the module docstring).

    Subclasses set :attr:`name` (what ``mode=`` and ``--mode`` take), :attr:`max_frames`, and implement the
    abstract methods; :attr:`options` holds their settings (a frozen dataclass, recorded in the output).
    """

    name: ClassVar[str]
    max_frames: ClassVar[int | None]
    """The most frames the layout takes (None: the model's ``max_frames``)."""
    reads_prompt_embeds: ClassVar[bool] = False
    """Whether the layout accepts text already encoded (``prompt_embeds``); only the grid, whose text is the prompt."""
    decodes_whole: ClassVar[bool] = False
    """Whether the layout decodes its arrangement as one image (the grid), so it trains on that image's encoding
    (``whole`` in :meth:`training_example`) rather than on its frames encoded alone."""
    options: Any = None

    # -- sampling ---------------------------------------------------------------------------------

    def frame_size(self, defaults: Any, frames: int) -> int:
        """The default frame side in pixels for `frames` frames (the model's native size)."""
        return int(defaults.frame_size)

    def check(self, pipe: Any, frames: int, frame_size: int, text_tokens: int) -> None:
        """Raise ``ValueError`` when `frames` frames of `frame_size` px cannot be generated (beyond the common checks)."""

    @abstractmethod
    def prepare(self, encoder: TextEncoder, inputs: LayoutInputs, device: torch.device | str,
                dtype: torch.dtype) -> SequenceConditioning:
        """The conditioning of one generation: text (with the step captions), ids, attention state, known frames."""

    @abstractmethod
    def denoise(self, pipe: Any, cond: SequenceConditioning, sampler: Sampler) -> torch.Tensor:
        """Integrate from noise; returns the layout's latents (what ``output_type="latent"`` returns)."""

    def decode(self, pipe: Any, latents: torch.Tensor, cond: SequenceConditioning
               ) -> tuple[list[list[Image.Image]], list[Image.Image]]:
        """The layout's latents -> one list of frames per sequence (PIL, known frames pasted back) and each
        sequence's serpentine grid image (the output's ``images``). Default: every frame decoded alone."""
        frames = self.decode_frames(pipe, latents, cond)
        if cond.known is not None:
            frames = [cond.known.paste(f) for f in frames]
        return frames, [frames_to_grid(f) for f in frames]

    def decode_frames(self, pipe: Any, latents: torch.Tensor, cond: SequenceConditioning) -> list[list[Image.Image]]:
        """The layout's latents -> each sequence's frames, before known frames are pasted back."""
        raise NotImplementedError(f"The {self.name} layout decodes in decode().")

    def denoising_passes(self, inputs: LayoutInputs) -> int:
        """Denoising loops per group of sequences (for progress): one for a one-pass layout."""
        return 1

    def groups(self, inputs: LayoutInputs) -> list[list[int]]:
        """Which sequences of a request run together (default: all in one batch)."""
        return [list(range(inputs.batch))]

    def settings(self, pipe: Any, cond: SequenceConditioning) -> dict[str, Any]:
        """What the output's metadata records about this layout (its name and options)."""
        opts = self.options.to_dict() if hasattr(self.options, "to_dict") else {}
        return {"mode": self.name, **({self.name.replace("-", "_"): opts} if opts else {})}

    # -- training ---------------------------------------------------------------------------------

    @abstractmethod
    def training_example(self, encoder: TextEncoder, inputs: LayoutInputs, frame_latents: torch.Tensor,
                         draws: Draws, blank: torch.Tensor | None = None,
                         whole: torch.Tensor | None = None) -> LayoutBatch:
        """A training batch: `frame_latents` ``(B, n, C, h, w)`` (each frame encoded alone) arranged as this layout
        feeds them (empty cells: `blank` ``(C, h, w)``), the text of `inputs` (caption dropout already applied to its
        prompts), noise and times from `draws`, the loss mask excluding known cells. A layout that
        :attr:`decodes_whole` takes its target from `whole` ``(B, C, H, W)``, the arrangement encoded as one image,
        when given (known cells stay `frame_latents`' own encodings, as sampling encodes known frames)."""


def step_text_for(encoder: TextEncoder, captions: list[str], inputs: LayoutInputs, fusion: float = 0.0,
                  max_tokens: int | None = None) -> StepText:
    """One plan's step captions as the model reads them: padded to ``inputs.step_tokens`` each when set, else each
    caption's own tokens (at most `max_tokens`, default the prompt's length); fused with the whole plan by `fusion`."""
    tokens = inputs.step_tokens or max_tokens or inputs.max_sequence_length
    steps = encoder.encode_steps(captions, tokens, whole=fusion > 0, pad=inputs.step_tokens is not None)
    return steps.fused(fusion)


def step_captions(inputs: LayoutInputs, negative: bool = False) -> list[list[str]]:
    """Each sequence's step captions as the model reads them: the plan's, or empty ones for the negative branch
    (and for a training item whose text was dropped: its plan's title is then empty)."""
    dropped = inputs.steps_dropped if inputs.steps_dropped is not None else [not p.strip() for p in inputs.prompts]
    return [[""] * p.num_steps if negative or drop else list(p.captions) for p, drop in zip(inputs.plans, dropped)]


__all__ = ["Draws", "Layout", "LayoutBatch", "LayoutInputs", "Sampler", "TextEncoder", "batch_velocity", "step_captions",
           "step_text_for"]
