"""The regional layout (CookAnything): any number of frames in one pass, each frame a region with its own step text.

Where the grid mode (MakeAnything) tiles the frames into one serpentine image driven by the prompt alone,
the regional mode holds the frames one after another, each at full frame size, and drives frame ``k`` by
step caption ``k`` (DESIGN.md #12). Three mechanisms, each a separate module, each switchable for ablations:

- **step text** (:mod:`procseq.conditioning.text`): the plan (prompt) tokens, then every step caption's
  tokens with their spans, each step fused with its slice of the whole-plan encoding,
  ``C_n = C_n + lambda * C_all[slice_n]`` (:attr:`RegionalConfig.fusion`);
- **the step-wise regional mask** (:mod:`procseq.attention.masks`): step text ``k`` <-> frame ``k``, the plan
  shared, blended with the unmasked global attention ``z = a * z_global + (1 - a) * z_regional``
  (:attr:`RegionalConfig.blend`) over the first :attr:`RegionalConfig.mask_steps` share of the denoising steps
  (plain attention after);
- **flexible ids** (:mod:`procseq.attention.rope`): ``[k, row, col]``, the 2-D positions restarting in each frame.

Known frames work as in grid mode (concat: their own t = 0 pass with the flexible ids of their frames; inplace:
written over their regions before every step), and so do adapters (the domain routing) and true CFG (the
negative branch reads the negative prompt only, with the frames kept apart by the same mask).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from PIL import Image

from procseq.attention.masks import RegionLayout, RegionMask
from procseq.attention.processors import install_processors
from procseq.attention.rope import flexible_position_ids, region_layout, regional_grid_ids
from procseq.conditioning.loras import REGIONAL, Pass, shipped_folder
from procseq.conditioning.sequence import SequenceConditioning
from procseq.conditioning.text import TextConditioning, join_plan_steps
from procseq.layout import GridLayout, unpack_latents
from procseq.layouts.base import LayoutInputs, Sampler, TextEncoder, step_captions, step_text_for
from procseq.layouts.one_pass import OnePassLayout, StepAttention
from procseq.machine import available_memory
from procseq.models.codec import decode_latents

IdsKind = Literal["flexible", "grid"]
ADAPTER = REGIONAL.name
"""The peft adapter name of the regional LoRA (:mod:`procseq.training.regional`)."""
META_FILE = REGIONAL.metas[0]
LORA_DIR = REGIONAL.folders[0]
REGIONAL_MAX_FRAMES = 64
"""The most frames the regional mode accepts (the memory check may allow fewer)."""


@dataclass(frozen=True)
class RegionalConfig:
    """The regional mode's knobs (the defaults are CookAnything's; BENCHMARKS.md "Regional mode" measures them).

    Args:
        mask: apply the step-wise regional mask (False: plain attention over every token, the "no mask" ablation).
        blend: ``a``, the share of the unmasked global attention blended into the masked one (0: masked only).
        mask_steps: share of the denoising steps (the first ones) that run masked; plain attention after.
        ids: ``"flexible"`` (ids restart per frame, step index on the first axis) or ``"grid"`` (each frame's
            serpentine-grid cell ids, the ablation).
        fusion: ``lambda`` of the cross-step consistency fusion (0: each step's text alone).
        max_tokens_per_step: T5 tokens per step caption at most (default: the model's ``max_sequence_length``).
        lora: use the regional LoRA (the one loaded with :func:`load_regional_lora`, else the model's own
            ``regional/`` when it ships one); False: training-free.
        grouped_attention: compute the masked pass step group by step group (linear in the frames); False: one
            dense masked attention (the same frames within float rounding; for the speed comparison).
    """

    mask: bool = True
    blend: float = 0.1
    mask_steps: float = 1.0
    ids: IdsKind = "flexible"
    fusion: float = 0.2
    max_tokens_per_step: int | None = None
    lora: bool = True
    grouped_attention: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"The regional global blend must be between 0 and 1, got {self.blend}.")
        if not 0.0 <= self.mask_steps <= 1.0:
            raise ValueError(f"mask_steps is a share of the denoising steps, between 0 and 1; got {self.mask_steps}.")
        if self.ids not in ("flexible", "grid"):
            raise ValueError(f"ids must be 'flexible' or 'grid', got {self.ids!r}.")
        if not math.isfinite(self.fusion) or self.fusion < 0:
            raise ValueError(f"The fusion weight lambda must be a finite number >= 0, got {self.fusion}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (stored in the output's settings)."""
        return asdict(self)


def attention_bytes(pipe: Any, frames: int, frame_size: int, text_tokens: int) -> int:
    """Rough peak bytes of one attention layer's scores in the regional pass (heads x L x L floats, two passes
    when the global attention is blended in), for the frame limit."""
    tokens = frames * (frame_size // (pipe.vae_scale_factor * 2)) ** 2 + text_tokens
    heads = pipe.transformer.config.num_attention_heads
    return 2 * heads * tokens * tokens * 4


def check_regional_frames(pipe: Any, frames: int, frame_size: int, text_tokens: int, budget: int | None = None) -> None:
    """Raise ``ValueError`` when `frames` regional frames need more attention memory than `budget` (default: half
    of the memory available now)."""
    budget = budget if budget is not None else available_memory() // 2
    need = attention_bytes(pipe, frames, frame_size, text_tokens)
    if need > budget:
        raise ValueError(f"{frames} frames of {frame_size} px need about {need / 2**30:.1f} GiB of attention memory "
                         f"in regional mode, over the {budget / 2**30:.1f} GiB available; lower --frames or --frame-size.")


def regional_ids(frames: int, frame_tokens: int, kind: IdsKind) -> torch.Tensor:
    """Image ids ``(frames * frame_tokens**2, 3)`` of the regional token order (flexible or grid)."""
    return flexible_position_ids(frames, frame_tokens) if kind == "flexible" else regional_grid_ids(frames, frame_tokens)


def load_regional_lora(pipe: Any, path: str | Path) -> dict[str, Any]:
    """Load a regional LoRA folder (``pytorch_lora_weights.safetensors`` + ``regional.json``) into `pipe`'s LoRA registry
    (:mod:`procseq.conditioning.loras`); it is on in regional generations only. Returns its metadata with ``"path"``."""
    return dict(pipe.loras.load(REGIONAL, path).info())


def default_regional_lora(model_folder: str | Path | None) -> Path | None:
    """The regional LoRA folder a model ships (``regional/``), if any."""
    return shipped_folder(REGIONAL, model_folder)


@contextmanager
def regional_lora_active(pipe: Any) -> Iterator[bool]:
    """Within: the procseq LoRAs of a regional generation's main pass (the regional LoRA on, loaded from the model's
    ``regional/`` on first use); yields whether the regional LoRA is on. A user's own peft adapters keep their state
    and ``set_adapters`` scales."""
    with pipe.loras.active(Regional.name, "main") as on:
        yield ADAPTER in on


class Regional(OnePassLayout):
    """CookAnything's regional layout (see the module docstring)."""

    name: ClassVar[str] = "regional"
    max_frames: ClassVar[int | None] = REGIONAL_MAX_FRAMES

    def __init__(self, options: RegionalConfig | None = None) -> None:
        self.options = options or RegionalConfig()

    def check(self, pipe: Any, frames: int, frame_size: int, text_tokens: int) -> None:
        """The attention memory of `frames` regions (:func:`check_regional_frames`)."""
        check_regional_frames(pipe, frames, frame_size, text_tokens * (frames + 1))

    def groups(self, inputs: LayoutInputs) -> list[list[int]]:
        """One sequence at a time unless the captions are padded (each plan's step text has its own length)."""
        return [list(range(inputs.batch))] if inputs.step_tokens else [[i] for i in range(inputs.batch)]

    def cells(self, frames: int) -> GridLayout:
        """A one-column strip: frame ``k``'s tokens after frame ``k - 1``'s (:func:`region_layout`)."""
        return region_layout(frames)

    def image_ids(self, frames: int, frame_tokens: int) -> torch.Tensor:
        """Flexible ids ``[k, row, col]`` (or the grid's, the ablation)."""
        return regional_ids(frames, frame_tokens, self.options.ids)

    def text(self, encoder: TextEncoder, inputs: LayoutInputs, negative: bool = False
             ) -> tuple[TextConditioning, list[tuple[int, int]] | None]:
        """The prompt's tokens, then every step caption's (fused with the whole plan); the negative branch reads the
        negative prompt alone (each caption's own length) or then empty captions (padded captions, so it batches)."""
        config = self.options
        if negative:
            assert inputs.negative_prompts is not None
            prompt = encoder.encode_text(inputs.negative_prompts, inputs.max_sequence_length)
            if not inputs.step_tokens:
                return prompt, None
        else:
            prompt = encoder.encode_text(inputs.prompts, inputs.max_sequence_length)
        steps = [step_text_for(encoder, c, inputs, config.fusion if not negative else 0.0, config.max_tokens_per_step)
                 for c in step_captions(inputs, negative)]
        return join_plan_steps(prompt, steps)

    def mask(self, cond: SequenceConditioning) -> RegionMask:
        """The step-wise regional mask of `cond`'s text and frames."""
        assert cond.step_spans is not None
        return RegionMask(RegionLayout.consecutive(cond.text.prompt_embeds.shape[1], cond.step_spans,
                                                   cond.frame_tokens ** 2), grouped=self.options.grouped_attention)

    def step_attention(self, cond: SequenceConditioning, num_steps: int) -> StepAttention | None:
        """The mask (blended with the global pass) over the first ``mask_steps`` share of the steps, plain after."""
        config = self.options
        masked = math.ceil(config.mask_steps * num_steps) if config.mask else 0
        state = self.mask(cond).attention_kwargs(config.blend)

        def apply(i: int, attention: dict[str, Any]) -> None:
            if i < masked:
                attention.update(state)
            else:
                attention.pop("region_mask", None)
                attention.pop("region_blend", None)

        return apply

    def batch_cfg(self, cond: SequenceConditioning, sampler: Sampler) -> bool | None:
        """Padded step text gives the negative branch the same spans, so the region mask fits both branches and they
        batch (unless the caller asks for two passes); otherwise two passes."""
        same = cond.negative is not None and cond.negative.prompt_embeds.shape == cond.text.prompt_embeds.shape
        return (sampler.batch_cfg is not False) if same else sampler.batch_cfg

    def training_attention(self, cond: SequenceConditioning) -> dict[str, Any]:
        """The masked steps' state (training sees what most sampling steps see)."""
        return self.mask(cond).attention_kwargs(self.options.blend) if self.options.mask else {}

    def lora(self, pipe: Any, cond: SequenceConditioning, pass_: Pass = "main") -> AbstractContextManager[Any]:
        """The procseq LoRAs of `pass_` (:meth:`procseq.conditioning.loras.LoraRegistry.active`): the regional LoRA in
        both passes (the one loaded with :func:`load_regional_lora`, else the model's own ``regional/``) unless the
        options turn it off, and the condition LoRA as the pass wants it."""
        install_processors(pipe.transformer)
        known_mode = cond.known_mode if cond.known is not None else None
        return pipe.loras.active(self.name, pass_, known_mode, skip=() if self.options.lora else (ADAPTER,))

    def decode_frames(self, pipe: Any, latents: torch.Tensor, cond: SequenceConditioning) -> list[list[Image.Image]]:
        """Every frame decoded alone."""
        return [decode_frames(pipe, latents[i:i + 1], cond.layout.num_frames, cond.frame_size)
                for i in range(latents.shape[0])]

    def settings(self, pipe: Any, cond: SequenceConditioning) -> dict[str, Any]:
        """The regional options and the regional LoRA used, if any."""
        lora = pipe.loras.info(REGIONAL) if self.options.lora else None
        return {"mode": self.name, "regional": self.options.to_dict(),
                "regional_lora": lora["path"] if lora is not None else None}


def decode_frames(pipe: Any, latents: torch.Tensor, frames: int, frame_size: int) -> list:
    """Regional packed latents ``(1, frames * frame_tokens**2, 4C)`` -> `frames` PIL frames, each decoded alone."""
    side = frame_size // pipe.vae_scale_factor
    strip = unpack_latents(latents, frames * side, side)  # (1, C, frames * side, side)
    per_frame = strip[0].unflatten(1, (frames, side)).permute(1, 0, 2, 3)  # (frames, C, side, side)
    return pipe.image_processor.postprocess(decode_latents(pipe.vae, per_frame), output_type="pil")


__all__ = ["ADAPTER", "LORA_DIR", "META_FILE", "REGIONAL_MAX_FRAMES", "Regional", "RegionalConfig", "attention_bytes",
           "check_regional_frames", "decode_frames", "default_regional_lora", "load_regional_lora",
           "regional_ids", "regional_lora_active"]
