"""The frame-by-frame layout (Loom): one frame per pass, conditioned on the plan, its step text, a step
embedding and sparse earlier frames.

Frame ``t`` of an ``n``-step plan is denoised **alone** (its own tokens only), with:

- text: the prompt (T5 tokens, padded as in grid mode), then, for a model that reads padded step text
  (``step_tokens``), the whole plan (every caption, Loom's ``P``), then step ``t``'s caption (``S_t``); the pooled
  vector is the prompt's (:attr:`FrameByFrameOptions.plan` switches the whole plan);
- the step embedding at progress ``t / (n - 1)``, added to its tokens before ``x_embedder``
  (:mod:`procseq.conditioning.history`);
- history: the earlier generated frames at Loom's sparse indices (``floor(i t / (K + 1))``), as clean known
  frames (:class:`procseq.conditioning.frames.KnownFrames`) in their own t = 0 condition pass, K/V cached for
  the frame's whole denoising and each given the step embedding of its own step.

Positions: the history frames and frame ``t`` sit, in time order, in the serpentine cells of a grid of
``h + 1`` frames (``h`` history frames, frame ``t`` in the last cell), so the cost of a frame depends on ``K``,
never on ``t``. Frames given as known pictures are not generated but serve as history. The weights (a
peft LoRA ``frame_by_frame`` active in both passes, plus the step-embedding table) live in the model's
``frame_by_frame/`` folder (``procseq train frame-by-frame`` writes it); without it the mode runs the
base model with no step embedding. Returns the same :class:`~procseq.sequence.SequenceOutput` as grid mode.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from procseq.attention.rope import known_position_ids
from procseq.conditioning.frames import KnownFrames
from procseq.conditioning.history import (
    EMBEDDING_FILE,
    HISTORY_KINDS,
    HistoryKind,
    StepEmbedding,
    added_to_input,
    history_indices,
    load_step_embedding,
    rotation_offset,
    select_history,
)
from procseq.conditioning.lora import read_meta
from procseq.conditioning.loras import FRAME_BY_FRAME, LORA_FILE, Pass, shipped_folder
from procseq.conditioning.sequence import SequenceConditioning
from procseq.conditioning.text import StepText, TextConditioning, join_plan_steps
from procseq.layout import GridLayout, pack_latents, unpack_latents
from procseq.layouts.base import (Draws, Layout, LayoutBatch, LayoutInputs, Sampler, TextEncoder, step_captions,
                                  step_text_for)
from procseq.layouts.sampling import denoise, flux_timesteps
from procseq.models.codec import decode_latents

ADAPTER_NAME = FRAME_BY_FRAME.name
WEIGHTS_DIR = FRAME_BY_FRAME.folders[0]
META_FILE = FRAME_BY_FRAME.metas[0]
MAX_FRAMES = 256
DEFAULT_K = 2


@dataclass
class FrameByFrameOptions:
    """What conditions each frame (Loom's ablation switches; the defaults are the method).

    Args:
        history: ``sparse`` (Loom), ``previous``, ``all`` or ``none`` (:func:`select_history`).
        k: history frames for ``sparse`` (default: the weights' training value, else 2).
        step_caption: add the step's caption to the text (False: the plan's title only).
        step_embedding: add the learned step embedding (False: none).
        lora: use the frame-by-frame LoRA when loaded.
        plan: read the whole plan (every step caption) before the step's own (None: where the model reads padded
            step text, its ``step_tokens``).
        weights: a folder from ``procseq train frame-by-frame`` (default: the model's ``frame_by_frame/``).
    """

    history: HistoryKind = "sparse"
    k: int | None = None
    step_caption: bool = True
    step_embedding: bool = True
    lora: bool = True
    plan: bool | None = None
    weights: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {k: v for k, v in asdict(self).items() if k != "weights"}

    def __post_init__(self) -> None:
        if self.history not in HISTORY_KINDS:
            raise ValueError(f"Unknown history {self.history!r}; use one of {', '.join(HISTORY_KINDS)}.")
        if self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0):
            raise ValueError(f"history k must be a whole number >= 0, got {self.k!r}.")


@dataclass
class FrameByFrameWeights:
    """The loaded frame-by-frame weights: the step embedding, the LoRA's metadata and where they came from."""

    embedding: StepEmbedding | None
    meta: dict[str, Any]
    path: str | None


def default_weights(model_folder: Path | None) -> Path | None:
    """The model's ``frame_by_frame/`` folder, when it holds the LoRA or (a base that learnt this layout) the step
    embedding alone."""
    folder = shipped_folder(FRAME_BY_FRAME, model_folder)
    if folder is None and model_folder and (Path(model_folder) / WEIGHTS_DIR / EMBEDDING_FILE).is_file():
        folder = Path(model_folder) / WEIGHTS_DIR
    return folder


def mode_adapters(pipe: Any, lora: bool, pass_: Pass = "main") -> AbstractContextManager[Any]:
    """Within: the procseq LoRAs of `pass_` of a frame-by-frame generation (:meth:`procseq.conditioning.loras.
    LoraRegistry.active`): the frame-by-frame LoRA on when `lora`, procseq's others (known frames, regional) off;
    a user's own peft adapters keep their state and scales. Restored after."""
    return pipe.loras.active(FrameByFrame.name, pass_, skip=() if lora else (ADAPTER_NAME,))


def load_weights(pipe: Any, path: str | Path | None = None) -> FrameByFrameWeights:
    """The frame-by-frame weights from a folder (default: the model's own): the LoRA (peft adapter ``frame_by_frame``,
    kept in the pipeline's LoRA registry, on in this mode only) and the step embedding kept beside it; the same
    folder again is the loaded one."""
    registry = pipe.loras
    folder = Path(path) if path is not None else (registry.shipped(FRAME_BY_FRAME)
                                                  or default_weights(pipe.model_folder))
    if folder is None:
        return FrameByFrameWeights(None, {}, None)
    if not (folder / LORA_FILE).is_file():
        if not (folder / EMBEDDING_FILE).is_file():
            raise FileNotFoundError(f"No frame-by-frame LoRA at {folder / LORA_FILE}; pass the folder written by "
                                    "`procseq train frame-by-frame` (OUTPUT_DIR/model).")
        # a base that learnt the layout ships its step embedding alone: no LoRA to register
        return FrameByFrameWeights(step_embedding(pipe, folder), {**read_meta(folder, (META_FILE,)),
                                                                  "path": str(folder)}, str(folder))
    lora = registry.load(FRAME_BY_FRAME, folder)
    if "step_embedding" not in lora.extras:
        try:
            lora.extras["step_embedding"] = step_embedding(pipe, folder)
        except ValueError:
            registry.unload(FRAME_BY_FRAME)
            raise
    return FrameByFrameWeights(lora.extras["step_embedding"], {**lora.meta, "path": str(folder)}, str(folder))


def step_embedding(pipe: Any, folder: Path) -> StepEmbedding | None:
    """The step embedding kept in `folder` (None without one), checked against the transformer's width."""
    if not (folder / EMBEDDING_FILE).is_file():
        return None
    emb = load_step_embedding(folder / EMBEDDING_FILE)
    if emb.table.shape[1] != pipe.transformer.config.in_channels:
        raise ValueError(f"{folder / EMBEDDING_FILE} is {emb.table.shape[1]} wide but the transformer takes "
                         f"{pipe.transformer.config.in_channels} channels; it was trained for another model.")
    return emb.to(pipe._execution_device)


def negative_text(cond: SequenceConditioning, t: int) -> TextConditioning | None:
    """The negative branch's text for frame `t`: with padded step text, the negative prompt then an empty caption of
    the same length (both CFG branches then batch); else the negative prompt alone."""
    if cond.negative is None or cond.layout_state.get("negative_steps") is None:
        return cond.negative
    return frame_text(cond.negative, cond.layout_state["negative_steps"], t)


def pad_captions(pieces: list[torch.Tensor]) -> torch.Tensor:
    """Caption token runs ``(L_i, D)`` -> one batch ``(B, max L_i, D)``, shorter ones padded with zeros."""
    width = max(p.shape[0] for p in pieces)
    return torch.stack([torch.cat([p, p.new_zeros(width - p.shape[0], p.shape[1])]) for p in pieces])


def frame_text(prompt: TextConditioning, steps: list[StepText] | None, t: int) -> TextConditioning:
    """The text of frame `t`: the title's tokens ``(B, L, D)``, then step `t`'s caption tokens of each sequence's
    plan (`steps`, one per sequence; shorter captions of a batch padded with zeros); the title alone without."""
    if steps is None:
        return prompt
    caption = pad_captions([s.embeds[0, s.spans[t][0]:s.spans[t][1]] for s in steps])
    embeds = torch.cat([prompt.prompt_embeds, caption.to(prompt.prompt_embeds)], dim=1)
    return TextConditioning(embeds, prompt.pooled_prompt_embeds, prompt.text_ids.new_zeros(embeds.shape[1], 3))


def frame_layout(num_history: int) -> GridLayout:
    """The cells of one pass: `num_history` history frames then the frame being generated, in time order."""
    return GridLayout.for_frames(num_history + 1)


def check_frames(frames: Any) -> int:
    """The number of frames of a frame-by-frame sequence (2..256), or ``ValueError``."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be between 2 and {MAX_FRAMES} in frame-by-frame mode, got {frames!r}.")
    return frames



@dataclass(frozen=True)
class FrameByFrameTraining:
    """How a training batch draws its frame's conditioning (Loom's training).

    Args:
        k_choices: the history sizes ``K`` drawn from; `history_dropout`: share of batches with no history;
        caption_dropout: share of batches without the step's own caption.
    """

    k_choices: tuple[int, ...] = (1, 2, 3)
    history_dropout: float = 0.1
    caption_dropout: float = 0.1


class FrameByFrame(Layout):
    """Loom's frame-by-frame layout (see the module docstring)."""

    name: ClassVar[str] = "frame-by-frame"
    max_frames: ClassVar[int | None] = MAX_FRAMES

    def denoising_passes(self, inputs: LayoutInputs) -> int:
        """One denoising loop per generated frame."""
        return inputs.frames - (len(inputs.known.indices) if inputs.known is not None else 0)

    def __init__(self, options: FrameByFrameOptions | None = None, training: FrameByFrameTraining | None = None,
                 embedding: StepEmbedding | None = None) -> None:
        self.options = options or FrameByFrameOptions()
        self.training = training or FrameByFrameTraining()
        self.embedding = embedding  # training: the step embedding being trained (sampling loads the model's)

    def reads_plan(self, inputs: LayoutInputs) -> bool:
        """Whether each frame's text holds the whole plan before its own caption."""
        return self.options.plan if self.options.plan is not None else inputs.step_tokens is not None

    def prompt_text(self, encoder: TextEncoder, inputs: LayoutInputs, negative: bool = False) -> TextConditioning:
        """The text every frame shares: the prompt (the negative prompt), then the whole plan where it is read."""
        prompts = inputs.negative_prompts if negative else inputs.prompts
        assert prompts is not None
        prompt = encoder.encode_text(prompts, inputs.max_sequence_length)
        if not self.reads_plan(inputs):
            return prompt
        return join_plan_steps(prompt, [step_text_for(encoder, c, inputs) for c in step_captions(inputs, negative)])[0]

    def step_texts(self, encoder: TextEncoder, inputs: LayoutInputs) -> list[StepText]:
        """Each plan's step captions (frame ``t`` reads caption ``t``)."""
        return [step_text_for(encoder, c, inputs) for c in step_captions(inputs)]

    # -- sampling ---------------------------------------------------------------------------------

    def prepare(self, encoder: TextEncoder, inputs: LayoutInputs, device: torch.device | str,
                dtype: torch.dtype) -> SequenceConditioning:
        """The shared text, each plan's step text, the weights and the history size."""
        weights = load_weights(encoder, self.options.weights)
        k = self.options.k if self.options.k is not None else int(weights.meta.get("k", DEFAULT_K))
        text = self.prompt_text(encoder, inputs)
        negative = self.prompt_text(encoder, inputs, negative=True) if inputs.negative_prompts is not None else None
        steps = self.step_texts(encoder, inputs) if self.options.step_caption else None
        # padded step text: the negative branch reads empty captions of the same length, so both branches batch
        empty = [step_text_for(encoder, c, inputs) for c in step_captions(inputs, negative=True)] \
            if steps is not None and negative is not None and inputs.step_tokens is not None else None
        img_ids = torch.zeros(0, 3, device=device, dtype=dtype)  # per frame (:meth:`denoise`)
        return SequenceConditioning(plans=inputs.plans, layout=GridLayout.for_frames(inputs.frames),
                                    frame_size=inputs.frame_size, frame_tokens=inputs.frame_tokens, text=text,
                                    img_ids=img_ids, negative=negative, known=inputs.known, known_mode="concat",
                                    joint_attention_kwargs=dict(inputs.joint_attention_kwargs),
                                    layout_state={"steps": steps, "negative_steps": empty, "k": k, "weights": weights})

    def denoise(self, pipe: Any, cond: SequenceConditioning, sampler: Sampler) -> torch.Tensor:
        """Every frame in turn; returns the frames' latents ``(B, n, C, h, w)``."""
        state, transformer, device = cond.layout_state, pipe.transformer, pipe._execution_device
        fbf: FrameByFrameWeights = state["weights"]
        embedding = fbf.embedding if self.options.step_embedding else None
        ft, frames, b = cond.frame_tokens, cond.layout.num_frames, len(cond.plans)
        dtype = cond.text.prompt_embeds.dtype
        branch_pooled = pipe.encode_text([""], cond.text.prompt_embeds.shape[1]).pooled_prompt_embeds
        guidance = pipe.guidance(sampler.guidance_scale)
        latents: list[torch.Tensor] = []  # per frame, (B, C, h, w)
        histories: list[list[int]] = []
        cpu: list[float] = []  # process CPU seconds per frame: robust to other jobs on a shared machine
        wall: list[float] = []
        known = cond.known
        with self.lora(pipe, cond):
            for t in range(frames):
                start, t_start = time.process_time(), time.perf_counter()
                if known is not None and t in known.indices:
                    j = known.indices.index(t)
                    latents.append(known.latents[:, j].to(device, dtype).expand(b, -1, -1, -1))
                    histories.append([])
                    cpu.append(time.process_time() - start)
                    wall.append(time.perf_counter() - t_start)
                    continue
                history = list(select_history(t, self.options.history, state["k"]))
                layout = frame_layout(len(history))
                attention = dict(cond.joint_attention_kwargs)
                if history:
                    cells = KnownFrames(tuple(range(len(history))), torch.stack([latents[i] for i in history], dim=1))
                    add = embedding.for_frames(history, frames, ft * ft) if embedding is not None else None
                    with added_to_input(transformer, add):  # the condition LoRA (known_frames) off; this mode's own
                        kv = cells.condition(transformer, layout, branch_pooled, guidance, lora=False)  # on in both
                    attention.update(kv.attention_kwargs("use"))
                ids = known_position_ids(layout, ft, [len(history)]).to(device, dtype)
                x, _ = pipe.prepare_latents(b, transformer.config.in_channels // 4, cond.frame_size, cond.frame_size,
                                            dtype, device, sampler.generator, None)
                add = embedding.for_frames([t], frames, ft * ft) if embedding is not None else None
                timesteps = flux_timesteps(pipe.scheduler, sampler.num_inference_steps, x.shape[1], device)
                with added_to_input(transformer, add):
                    x = denoise(transformer, pipe.scheduler, x, ids, frame_text(cond.text, state["steps"], t),
                                timesteps, guidance_scale=sampler.guidance_scale, negative=negative_text(cond, t),
                                true_cfg_scale=sampler.true_cfg_scale, joint_attention_kwargs=attention or None,
                                autocast_dtype=sampler.autocast_dtype, after_step=sampler.after_step,
                                batch_cfg=sampler.batch_cfg)
                latents.append(unpack_latents(x, 2 * ft, 2 * ft))
                histories.append(history)
                cpu.append(time.process_time() - start)
                wall.append(time.perf_counter() - t_start)
        state.update(histories=histories, timings={"frames": wall, "frames_cpu": cpu})
        return torch.stack(latents, dim=1)

    def lora(self, pipe: Any, cond: SequenceConditioning, pass_: Pass = "main") -> AbstractContextManager[Any]:
        """The procseq LoRAs of `pass_` (:func:`mode_adapters`): the frame-by-frame LoRA on in both passes when the
        options use it and weights were loaded (the history's condition pass needs no switch of its own)."""
        weights: FrameByFrameWeights = cond.layout_state["weights"]
        return mode_adapters(pipe, bool(self.options.lora and weights.path), pass_)

    def decode_frames(self, pipe: Any, latents: torch.Tensor, cond: SequenceConditioning) -> list[list[Image.Image]]:
        """Every frame decoded alone."""
        b, n = latents.shape[:2]
        images = pipe.image_processor.postprocess(decode_latents(pipe.vae, latents.flatten(0, 1)), output_type="pil")
        return [images[i * n:(i + 1) * n] for i in range(b)]

    def settings(self, pipe: Any, cond: SequenceConditioning) -> dict[str, Any]:
        """The history, the switches, the weights used and each frame's history."""
        state, o = cond.layout_state, self.options
        weights: FrameByFrameWeights = state["weights"]
        return {"mode": self.name, "history": o.history, "k": state["k"], "step_caption": o.step_caption,
                "step_embedding": bool(o.step_embedding and weights.embedding is not None),
                "frame_by_frame_weights": weights.path, "history_frames": state.get("histories", [])}

    # -- training ---------------------------------------------------------------------------------

    def training_example(self, encoder: TextEncoder, inputs: LayoutInputs, frame_latents: torch.Tensor,
                         draws: Draws, blank: torch.Tensor | None = None,
                         whole: torch.Tensor | None = None) -> LayoutBatch:
        """One frame ``t`` for the batch (``draws.shared``) with its history (Loom's sparse indices at a rotation
        offset), as :meth:`denoise` generates it; the loss on its tokens."""
        tr, generator = self.training, draws.shared
        b, n = frame_latents.shape[:2]
        t = int(torch.randint(n, (1,), generator=generator))
        k = int(tr.k_choices[int(torch.randint(len(tr.k_choices), (1,), generator=generator))])
        if float(torch.rand(1, generator=generator)) < tr.history_dropout:
            k = 0
        history = history_indices(t, k, rotation_offset(t, k, generator))
        with_caption = float(torch.rand(1, generator=generator)) >= tr.caption_dropout
        x0 = pack_latents(frame_latents[:, t])
        noise = draws.noise(tuple(x0.shape[1:]), x0)
        text = self.prompt_text(encoder, inputs)
        if with_caption and self.options.step_caption:
            text = frame_text(text, self.step_texts(encoder, inputs), t)
        layout = frame_layout(len(history))
        ft = round(x0.shape[1] ** 0.5)
        known = KnownFrames(tuple(range(len(history))), frame_latents[:, list(history)]) if history else None
        emb = self.embedding
        return LayoutBatch(
            x0=x0, noise=noise, t=draws.times(x0), text=text,
            img_ids=known_position_ids(layout, ft, [len(history)]).to(x0), known=known, known_mode="concat",
            known_cells=layout, known_ids=known_position_ids(layout, ft, range(len(history))).to(x0) if history else None,
            input_addition=(lambda: emb.for_frames([t], n, ft * ft)) if emb is not None else None,
            history_addition=(lambda: emb.for_frames(history, n, ft * ft)) if emb is not None and history else None,
            layout=self.name, info={"frame": t, "history": tuple(history), "caption": with_caption})


__all__ = ["ADAPTER_NAME", "DEFAULT_K", "FrameByFrame", "FrameByFrameOptions", "FrameByFrameTraining",
           "FrameByFrameWeights", "MAX_FRAMES", "META_FILE", "WEIGHTS_DIR", "check_frames", "default_weights",
           "frame_layout", "frame_text", "load_weights", "mode_adapters", "pad_captions"]
