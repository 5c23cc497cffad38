"""The frame-by-frame layout (Loom): one frame per pass, conditioned on the plan, its step text, a step
embedding and sparse earlier frames.

Frame ``t`` of an ``n``-step plan is denoised **alone** (its own tokens only), with:

- text: the plan's title (T5 tokens, padded as in grid mode) followed by step ``t``'s caption (its real
  tokens, :func:`procseq.conditioning.text.encode_steps`); the pooled vector is the title's;
- the step embedding at progress ``t / (n - 1)``, added to its tokens before ``x_embedder``
  (:mod:`procseq.conditioning.history`);
- history: the earlier generated frames at Loom's sparse indices (``floor(i t / (K + 1))``), as clean known
  frames (:class:`procseq.conditioning.frames.KnownFrames`) in their own t = 0 condition pass, K/V cached for
  the frame's whole denoising and each given the step embedding of its own step.

Positions: the history frames and frame ``t`` sit, in time order, in the serpentine cells of a grid of
``h + 1`` frames (``h`` history frames, frame ``t`` in the last cell), so the cost of a frame depends on ``K``,
never on ``t``. Frames given as known pictures are not generated but serve as history. The weights (a
peft LoRA ``frame_by_frame`` active in both passes, plus the step-embedding table) live in the model's
``frame_by_frame/`` folder (:mod:`procseq.training.frame_by_frame` writes it); without it the mode runs the
base model with no step embedding. Returns the same :class:`~procseq.sequence.SequenceOutput` as grid mode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from procseq.attention.processors import adapters_enabled, set_adapters_active
from procseq.attention.rope import known_position_ids
from procseq.conditioning.frames import KnownFrames, KnownImage
from procseq.conditioning.history import (
    EMBEDDING_FILE,
    HISTORY_KINDS,
    HistoryKind,
    StepEmbedding,
    added_to_input,
    load_step_embedding,
    select_history,
)
from procseq.conditioning.lora import LORA_FILE, load_condition_lora
from procseq.conditioning.text import StepText, TextConditioning, encode_steps
from procseq.layout import GridLayout, frames_to_grid, unpack_latents
from procseq.models.codec import decode_latents
from procseq.planning import Plan, Planner, corpus_plan
from procseq.pipelines.sampling import denoise, flux_timesteps
from procseq.pipelines.output import SequenceOutput

ADAPTER_NAME = "frame_by_frame"
WEIGHTS_DIR = "frame_by_frame"
META_FILE = "frame_by_frame.json"
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
    """

    history: HistoryKind = "sparse"
    k: int | None = None
    step_caption: bool = True
    step_embedding: bool = True
    lora: bool = True

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
    """The model's ``frame_by_frame/`` folder, when it holds the LoRA."""
    folder = Path(model_folder) / WEIGHTS_DIR if model_folder else None
    return folder if folder is not None and (folder / LORA_FILE).is_file() else None


@contextmanager
def mode_adapters(transformer: Any, lora: bool) -> Iterator[None]:
    """Within: procseq's other LoRAs (known frames, regional) off and the frame-by-frame LoRA on when `lora`;
    a user's own peft adapters keep their state and scales. Restored after."""
    from contextlib import ExitStack

    from procseq.conditioning.lora import ADAPTER_NAME as CONDITION_ADAPTER
    from procseq.pipelines.regional import ADAPTER as REGIONAL_ADAPTER

    with ExitStack() as stack:
        stack.enter_context(adapters_enabled(transformer, False, names=(CONDITION_ADAPTER, REGIONAL_ADAPTER)))
        stack.enter_context(adapters_enabled(transformer, lora, names=(ADAPTER_NAME,)))
        yield


def load_weights(pipe: Any, path: str | Path | None = None) -> FrameByFrameWeights:
    """Load the frame-by-frame LoRA (peft adapter ``frame_by_frame``, inactive outside this mode) and the step
    embedding from a folder (default: the model's own), into ``pipe``; the same folder again is a no-op."""
    folder = Path(path) if path is not None else default_weights(pipe.model_folder)
    current: FrameByFrameWeights | None = getattr(pipe, "_frame_by_frame", None)
    if folder is None:
        weights = FrameByFrameWeights(None, {}, None)
    elif current is not None and current.path == str(folder):
        return current
    else:
        if not (folder / LORA_FILE).is_file():
            raise FileNotFoundError(f"No frame-by-frame LoRA at {folder / LORA_FILE}; pass the folder written by "
                                    "`procseq train frame-by-frame` (OUTPUT_DIR/model).")
        transformer = pipe.transformer
        if current is not None and current.path is not None:
            transformer.delete_adapters(ADAPTER_NAME)
        meta = load_condition_lora(pipe, folder, adapter_name=ADAPTER_NAME, metas=(META_FILE,))
        set_adapters_active(transformer, [ADAPTER_NAME], False)  # the new LoRA stays off outside this mode
        emb = load_step_embedding(folder / EMBEDDING_FILE) if (folder / EMBEDDING_FILE).is_file() else None
        if emb is not None and emb.table.shape[1] != transformer.config.in_channels:
            raise ValueError(f"{folder / EMBEDDING_FILE} is {emb.table.shape[1]} wide but the transformer takes "
                             f"{transformer.config.in_channels} channels; it was trained for another model.")
        weights = FrameByFrameWeights(emb.to(pipe._execution_device) if emb is not None else None,
                                      {**meta, "path": str(folder)}, str(folder))
    pipe._frame_by_frame = weights
    return weights


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


@torch.no_grad()
def generate_frame_by_frame(
    pipe: Any,
    prompt: str | list[str] | None = None,
    domain: str | None = None,
    frames: int | None = None,
    frame_size: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    negative_prompt: str | None = None,
    true_cfg_scale: float | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    max_sequence_length: int | None = None,
    captions: list[str] | None = None,
    plan: Plan | list[Plan] | None = None,
    planner: Planner = corpus_plan,
    known: Mapping[int, KnownImage] | KnownFrames | None = None,
    adapter_weights: Mapping[str, float] | None = None,
    allow_unseen: bool = False,
    max_pixels: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    output_type: str = "pil",
    return_dict: bool = True,
    options: FrameByFrameOptions | None = None,
    weights: str | Path | None = None,
) -> SequenceOutput | tuple[Any, ...]:
    """Generate one sequence per prompt, frame by frame (see the module docstring).

    The arguments are :meth:`procseq.ProcessPipeline.__call__`'s, plus `options` (the history and the ablation
    switches, :class:`FrameByFrameOptions`) and `weights` (a folder from ``procseq train frame-by-frame``;
    default: the model's ``frame_by_frame/``). ``output_type`` is ``"pil"``, ``"np"`` or ``"pt"``.
    """
    options = options or FrameByFrameOptions()
    if output_type not in ("pil", "np", "pt"):
        raise ValueError(f"output_type must be 'pil', 'np' or 'pt' in frame-by-frame mode, got {output_type!r}.")
    first = plan if isinstance(plan, Plan) else (plan[0] if plan else None)
    if prompt is None:
        if first is None:
            raise ValueError("Pass a prompt (or a plan).")
        prompt = [p.title for p in plan] if isinstance(plan, list) else first.title
    domain = domain or (first.domain if first else "painting")
    frames = check_frames(frames or (first.num_steps if first else len(captions) if captions else 9))
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    d = pipe.defaults
    frame_size = frame_size or d.frame_size
    steps = num_inference_steps or d.num_inference_steps
    guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
    true_cfg_scale = d.true_cfg_scale if true_cfg_scale is None else true_cfg_scale
    negative_prompt = "" if true_cfg_scale > 1 and negative_prompt is None else negative_prompt
    pipe.check_sequence_inputs(prompts, domain, frames, frame_size, allow_unseen, max_frames=MAX_FRAMES)
    plans = pipe.make_plans(prompts, domain, frames, plan, captions, planner)
    fbf = load_weights(pipe, weights)
    k = options.k if options.k is not None else int(fbf.meta.get("k", DEFAULT_K))
    encoded = d.model_prompts(prompts, domain, frames)  # what the model reads (procseq.domain_prompt)
    max_sequence_length = max_sequence_length or pipe.text_length(encoded + [negative_prompt or ""])
    device, transformer = pipe._execution_device, pipe.transformer
    ft = frame_size // (pipe.vae_scale_factor * 2)
    known_frames = pipe.prepare_known(known, frames, frame_size, max_pixels)

    t0 = time.perf_counter()
    text = pipe.encode_text(encoded, max_sequence_length)
    negative = pipe.encode_text([negative_prompt] * len(prompts), max_sequence_length) \
        if true_cfg_scale > 1 and negative_prompt is not None else None
    step_texts = [encode_steps(pipe, p.captions, max_sequence_length) for p in plans] if options.step_caption else None
    branch_pooled = pipe.encode_text([""], max_sequence_length).pooled_prompt_embeds
    embedding = fbf.embedding if options.step_embedding else None
    guidance = pipe.guidance(guidance_scale)
    lora = mode_adapters(transformer, bool(options.lora and fbf.path))
    channels = transformer.config.in_channels // 4
    latents: list[torch.Tensor] = []  # per frame, (B, C, h, w)
    frame_times: list[float] = []
    frame_cpu: list[float] = []  # process CPU seconds: robust to other jobs on a shared machine
    histories: list[list[int]] = []
    t_encode = time.perf_counter()
    with pipe.adapter_routing(domain, adapter_weights), lora:
        for t in range(frames):
            start, cpu = time.perf_counter(), time.process_time()
            if known_frames is not None and t in known_frames.indices:
                j = known_frames.indices.index(t)
                latents.append(known_frames.latents[:, j].to(device, text.prompt_embeds.dtype)
                               .expand(len(prompts), -1, -1, -1))
                histories.append([])
                frame_times.append(time.perf_counter() - start)
                frame_cpu.append(time.process_time() - cpu)
                continue
            history = list(select_history(t, options.history, k))
            layout = frame_layout(len(history))
            attention = None
            if history:
                cells = KnownFrames(tuple(range(len(history))), torch.stack([latents[i] for i in history], dim=1))
                add = embedding.for_frames(history, frames, ft * ft) if embedding is not None else None
                with added_to_input(transformer, add):
                    kv = cells.condition(transformer, layout, branch_pooled, guidance, lora=False)  # the condition
                    # LoRA (known_frames) off; this mode's own LoRA is on in both passes
                attention = kv.attention_kwargs("use")
            ids = known_position_ids(layout, ft, [len(history)]).to(device, text.prompt_embeds.dtype)
            x, _ = pipe.prepare_latents(len(prompts), channels, frame_size, frame_size, text.prompt_embeds.dtype,
                                        device, generator, None)
            cond = frame_text(text, step_texts, t)
            add = embedding.for_frames([t], frames, ft * ft) if embedding is not None else None
            timesteps = flux_timesteps(pipe.scheduler, steps, x.shape[1], device)
            with added_to_input(transformer, add):
                x = denoise(transformer, pipe.scheduler, x, ids, cond, timesteps, guidance_scale=guidance_scale,
                            negative=negative, true_cfg_scale=true_cfg_scale, joint_attention_kwargs=attention,
                            autocast_dtype=autocast_dtype)
            latents.append(unpack_latents(x, 2 * ft, 2 * ft))
            histories.append(history)
            frame_times.append(time.perf_counter() - start)
            frame_cpu.append(time.process_time() - cpu)
    t_denoise = time.perf_counter()
    stacked = torch.stack(latents, dim=1)  # (B, n, C, h, w)
    pixels = decode_latents(pipe.vae, stacked.flatten(0, 1))
    images = pipe.image_processor.postprocess(pixels, output_type="pil")
    pipe.maybe_free_model_hooks()
    frame_lists = [images[b * frames:(b + 1) * frames] for b in range(len(prompts))]
    if known_frames is not None:
        frame_lists = [known_frames.paste(f) for f in frame_lists]
    grids = [frames_to_grid(f) for f in frame_lists]
    t_end = time.perf_counter()
    settings: dict[str, Any] = {
        "mode": "frame-by-frame", "domain": domain, "frames": frames, "frame_size": frame_size,
        "num_inference_steps": steps, "guidance_scale": guidance_scale, "true_cfg_scale": true_cfg_scale,
        "history": options.history, "k": k, "step_caption": options.step_caption,
        "step_embedding": embedding is not None, "frame_by_frame_weights": fbf.path, "history_frames": histories,
        **({"adapter_weights": dict(adapter_weights)} if adapter_weights else {}),
        **({"known_frames": list(known_frames.indices)} if known_frames is not None else {}),
        "timings_s": {"encode": t_encode - t0, "denoise": t_denoise - t_encode, "decode": t_end - t_denoise,
                      "total": t_end - t0, "frames": frame_times, "frames_cpu": frame_cpu},
    }
    out = SequenceOutput(images=grids, frames=frame_lists, captions=[p.captions for p in plans],
                         metadata=[json.loads(json.dumps(settings)) for _ in prompts], plans=plans)
    out = out.converted(output_type)
    return out if return_dict else (out.images,)


__all__ = ["ADAPTER_NAME", "DEFAULT_K", "FrameByFrameOptions", "FrameByFrameWeights", "META_FILE", "WEIGHTS_DIR",
           "check_frames", "default_weights", "frame_layout", "frame_text", "pad_captions", "generate_frame_by_frame", "load_weights",
           "mode_adapters"]
