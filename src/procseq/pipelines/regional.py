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

import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from procseq.attention.masks import RegionLayout, RegionMask
from procseq.attention.processors import adapters_enabled, install_processors, run_condition_pass, set_adapters_active
from procseq.attention.rope import flexible_position_ids, region_layout, regional_grid_ids
from procseq.machine import available_memory
from procseq.conditioning.frames import KnownFrames, KnownImage, KnownMode
from procseq.conditioning.lora import load_condition_lora
from procseq.conditioning.sequence import SequenceConditioning
from procseq.conditioning.text import TextConditioning, encode_steps, join_text
from procseq.layout import frames_to_grid, unpack_latents
from procseq.models.codec import decode_latents
from procseq.conditioning.plan import Plan
from procseq.pipelines.sampling import denoise, flux_timesteps
from procseq.pipelines.output import SequenceOutput

IdsKind = Literal["flexible", "grid"]
ADAPTER = "regional"
"""The peft adapter name of the regional LoRA (:mod:`procseq.training.regional`)."""
META_FILE = "regional.json"
LORA_DIR = "regional"
REGIONAL_MAX_FRAMES = 64
"""The most frames the regional mode accepts (the memory check may allow fewer)."""
StepEndCallback = Callable[[Any, int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


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


def step_text_conditioning(pipe: Any, prompt: str, plan: Plan, max_sequence_length: int, config: RegionalConfig
                           ) -> tuple[TextConditioning, list[tuple[int, int]]]:
    """The regional text: the prompt's tokens, then every step caption's (fused), and the steps' spans in it."""
    plan_text = pipe.encode_text([prompt], max_sequence_length)
    steps = encode_steps(pipe, plan.captions, config.max_tokens_per_step or max_sequence_length,
                         whole=config.fusion > 0).fused(config.fusion)
    embeds, text_ids, spans = join_text(plan_text.prompt_embeds, steps)
    return TextConditioning(embeds, plan_text.pooled_prompt_embeds, text_ids.to(plan_text.text_ids)), spans


def regional_ids(frames: int, frame_tokens: int, kind: IdsKind) -> torch.Tensor:
    """Image ids ``(frames * frame_tokens**2, 3)`` of the regional token order (flexible or grid)."""
    return flexible_position_ids(frames, frame_tokens) if kind == "flexible" else regional_grid_ids(frames, frame_tokens)


def load_regional_lora(pipe: Any, path: str | Path) -> dict[str, Any]:
    """Load a regional LoRA folder (``pytorch_lora_weights.safetensors`` + ``regional.json``) into `pipe`; it stays
    off outside regional generations. Returns its metadata (stored as ``pipe.regional_lora``)."""
    folder = Path(path)
    meta = load_condition_lora(pipe, folder, adapter_name=ADAPTER)
    meta_file = (folder if folder.is_dir() else folder.parent) / META_FILE
    meta.update(json.loads(meta_file.read_text()) if meta_file.is_file() else {})
    pipe.regional_lora = meta
    set_adapters_active(pipe.transformer, [ADAPTER], False)
    return meta


def default_regional_lora(model_folder: str | Path | None) -> Path | None:
    """The regional LoRA folder a model ships (``regional/``), if any."""
    folder = Path(model_folder) / LORA_DIR if model_folder else None
    return folder if folder is not None and (folder / "pytorch_lora_weights.safetensors").is_file() else None


@contextmanager
def regional_lora_active(pipe: Any) -> Iterator[bool]:
    """Within: the pipe's regional LoRA on (yields whether there is one); off again after. Only the adapter
    ``"regional"`` changes: other peft adapters keep their state and ``set_adapters`` scales."""
    if getattr(pipe, "regional_lora", None) is None:
        yield False
        return
    with adapters_enabled(pipe.transformer, True, names=(ADAPTER,)):
        yield True


def generate_regional(
    pipe: Any,
    prompts: list[str],
    plans: list[Plan],
    domain: str,
    frames: int,
    frame_size: int,
    num_inference_steps: int,
    guidance_scale: float,
    true_cfg_scale: float,
    negative_prompt: str | list[str] | None,
    max_sequence_length: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    latents: torch.Tensor | None = None,
    known: Mapping[int, KnownImage] | KnownFrames | None = None,
    known_mode: KnownMode = "inplace",
    joint_attention_kwargs: dict[str, Any] | None = None,
    autocast_dtype: torch.dtype | None = None,
    adapter_weights: Mapping[str, float] | None = None,
    max_pixels: int | None = None,
    output_type: str = "pil",
    callback_on_step_end: StepEndCallback | None = None,
    config: RegionalConfig | None = None,
) -> SequenceOutput:
    """Generate one sequence per prompt in the regional layout (the arguments are :class:`ProcessPipeline`'s,
    already resolved by its ``__call__``); returns the same :class:`SequenceOutput` as grid mode, its ``grid`` the
    frames pasted into the serpentine grid."""
    config = config or RegionalConfig()
    install_processors(pipe.transformer)
    shipped = default_regional_lora(pipe.model_folder)
    if config.lora and getattr(pipe, "regional_lora", None) is None and shipped is not None:
        load_regional_lora(pipe, shipped)
    negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) or negative_prompt is None \
        else list(negative_prompt)
    generators = generator if isinstance(generator, list) else [generator] * len(prompts)
    if len(generators) != len(prompts) or len(negatives) != len(prompts):
        raise ValueError(f"Pass one generator and one negative prompt per prompt ({len(prompts)}), or a single one.")
    known_frames = pipe.prepare_known(known, frames, frame_size, max_pixels)
    results = []
    for i, (prompt, plan, neg, gen) in enumerate(zip(prompts, plans, negatives, generators)):
        start = None if latents is None else latents[i:i + 1]
        results.append(_one_sequence(pipe, prompt, plan, domain, frames, frame_size, num_inference_steps,
                                     guidance_scale, true_cfg_scale, neg, max_sequence_length, gen, start,
                                     known_frames, known_mode, dict(joint_attention_kwargs or {}), autocast_dtype,
                                     adapter_weights, output_type, callback_on_step_end, config))
    if output_type == "latent":
        latents = torch.cat([r[0] for r in results])
        return SequenceOutput(images=latents, frames=[], captions=[p.captions for p in plans],
                              metadata=[r[2] for r in results], plans=plans, latents=latents)
    out = SequenceOutput(images=[r[1] for r in results], frames=[r[0] for r in results],
                         captions=[p.captions for p in plans], metadata=[r[2] for r in results], plans=plans)
    return out.converted(output_type)


def _one_sequence(pipe: Any, prompt: str, plan: Plan, domain: str, frames: int, frame_size: int, steps: int,
                  guidance_scale: float, true_cfg_scale: float, negative_prompt: str | None, max_sequence_length: int,
                  generator: torch.Generator | None, latents: torch.Tensor | None, known: KnownFrames | None,
                  known_mode: KnownMode, attention: dict[str, Any], autocast_dtype: torch.dtype | None,
                  adapter_weights: Mapping[str, float] | None, output_type: str,
                  callback_on_step_end: StepEndCallback | None, config: RegionalConfig) -> tuple[Any, Any, dict]:
    device = pipe._execution_device
    t0 = time.perf_counter()
    text, spans = step_text_conditioning(pipe, prompt, plan, max_sequence_length, config)
    negative = None
    if true_cfg_scale > 1 and negative_prompt is not None:
        negative = pipe.encode_text([negative_prompt], max_sequence_length)
    frame_tokens = frame_size // (pipe.vae_scale_factor * 2)
    strip = region_layout(frames)
    img_ids = regional_ids(frames, frame_tokens, config.ids).to(device=device, dtype=text.prompt_embeds.dtype)
    if known is not None and known.frame_tokens != frame_tokens:
        raise ValueError(f"The known frames were encoded at {known.frame_tokens * pipe.vae_scale_factor * 2} px but "
                         f"the frames are {frame_size} px; encode them at the frame size.")
    cond = SequenceConditioning(plans=[plan], layout=strip, frame_size=frame_size, frame_tokens=frame_tokens,
                                text=text, img_ids=img_ids, negative=negative, known=known, known_mode=known_mode,
                                joint_attention_kwargs=attention)
    channels = pipe.transformer.config.in_channels // 4
    latents, _ = pipe.prepare_latents(1, channels, frames * frame_size, frame_size, text.prompt_embeds.dtype, device,
                                      generator, latents)
    timesteps = flux_timesteps(pipe.scheduler, steps, latents.shape[1], device)
    mask = RegionMask(RegionLayout.consecutive(text.prompt_embeds.shape[1], spans, frame_tokens ** 2),
                      grouped=config.grouped_attention)
    masked_steps = math.ceil(config.mask_steps * len(timesteps)) if config.mask else 0
    inplace = cond.before_step()

    def before(i: int, lat: torch.Tensor) -> torch.Tensor:
        if i < masked_steps:
            attention.update(mask.attention_kwargs(config.blend))
        else:
            attention.pop("region_mask", None)
            attention.pop("region_blend", None)
        return inplace(i, lat) if inplace is not None else lat

    def after(i: int, t: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
        if callback_on_step_end is None:
            return lat
        return (callback_on_step_end(pipe, i, t, {"latents": lat}) or {}).get("latents", lat)

    t_encode = time.perf_counter()
    lora = regional_lora_active(pipe) if config.lora else nullcontext(False)
    with pipe.adapter_routing(domain, adapter_weights), lora as regional_on:
        if known is not None and known_mode == "concat":
            pooled = pipe.encode_text([""], max_sequence_length).pooled_prompt_embeds
            ids = img_ids[known.token_index(strip).to(device)]
            kv = run_condition_pass(pipe.transformer, known.tokens().to(pooled), ids, pooled,
                                    pipe.guidance(guidance_scale))
            attention.update(kv.attention_kwargs("use"))
        with pipe.main_pass_lora(cond):
            latents = denoise(pipe.transformer, pipe.scheduler, latents, img_ids, text, timesteps,
                              guidance_scale=guidance_scale, negative=negative, true_cfg_scale=true_cfg_scale,
                              joint_attention_kwargs=attention, autocast_dtype=autocast_dtype, before_step=before,
                              after_step=after)
        latents = cond.finish(latents)
    t_denoise = time.perf_counter()
    settings: dict[str, Any] = {
        "mode": "regional", "domain": domain, "frames": frames, "frame_size": frame_size,
        "num_inference_steps": steps, "guidance_scale": guidance_scale, "true_cfg_scale": true_cfg_scale,
        "regional": config.to_dict(), "regional_lora": (pipe.regional_lora or {}).get("path") if regional_on else None,
        **({"adapter_weights": dict(adapter_weights)} if adapter_weights else {}),
        **({"known_frames": list(known.indices), "known_mode": known_mode,
            "condition_lora": (pipe.condition_lora or {}).get("path")} if known is not None else {}),
    }
    if output_type == "latent":
        settings["timings_s"] = {"encode": t_encode - t0, "denoise": t_denoise - t_encode}
        return latents, None, settings
    images = decode_frames(pipe, latents, frames, frame_size)
    pipe.maybe_free_model_hooks()
    if known is not None:
        images = known.paste(images)
    t_end = time.perf_counter()
    settings["timings_s"] = {"encode": t_encode - t0, "denoise": t_denoise - t_encode, "decode": t_end - t_denoise,
                             "total": t_end - t0}
    return images, frames_to_grid(images), settings


def decode_frames(pipe: Any, latents: torch.Tensor, frames: int, frame_size: int) -> list:
    """Regional packed latents ``(1, frames * frame_tokens**2, 4C)`` -> `frames` PIL frames, each decoded alone."""
    side = frame_size // pipe.vae_scale_factor
    strip = unpack_latents(latents, frames * side, side)  # (1, C, frames * side, side)
    per_frame = strip[0].unflatten(1, (frames, side)).permute(1, 0, 2, 3)  # (frames, C, side, side)
    return pipe.image_processor.postprocess(decode_latents(pipe.vae, per_frame), output_type="pil")


__all__ = ["REGIONAL_MAX_FRAMES", "RegionalConfig", "attention_bytes", "check_regional_frames", "decode_frames", "generate_regional",
           "regional_ids", "step_text_conditioning"]
