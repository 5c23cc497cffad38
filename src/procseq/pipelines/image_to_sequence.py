"""ReCraft: a picture of the finished artifact becomes the process that made it (MakeAnything's ReCraft).

Two ways to condition the grid on the clean final image (``mode``):

- ``"concat"`` (default; OminiControl-style condition tokens): the image is VAE-encoded into clean
  tokens that run in their own transformer pass at t = 0 with the position ids of the final frame's
  cell; every attention layer's condition K/V are cached once and appended to the main pass's keys
  and values (:mod:`procseq.attention.processors`). The ReCraft LoRA is active in that pass only.
- ``"inplace"`` (the MakeAnything code's baseline): the final cell of the noisy grid is overwritten
  by the clean latent before every step; its LoRA (if any) is an ordinary LoRA on the main pass.

Either way the N-1 earlier frames are generated and the last frame of the output is the input,
resized to the frame size (:func:`procseq.images.prepare_image`: white square padding, then resize).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from procseq.attention.processors import (
    adapters_enabled,
    condition_processors,
    run_condition_pass,
)
from procseq.attention.rope import condition_position_ids
from procseq.images import MAX_PIXELS, load_image, prepare_image
from procseq.layout import (
    GridLayout,
    frame_token_indices,
    frames_to_grid,
    grid_position_ids,
    grid_to_frames,
    pack_latents,
)
from procseq.pipelines.planning import Planner, template_plan
from procseq.pipelines.sampling import denoise, flux_timesteps
from procseq.pipelines.text_to_sequence import ProcessPipeline
from procseq.sequence import SequenceOutput

RecraftMode = Literal["concat", "inplace"]
MODES = ("concat", "inplace")
ADAPTER_NAME = "recraft"
LORA_DIR = "recraft"
LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_META = "recraft.json"

DOMAIN_PROMPTS: dict[str, str] = {
    "painting": "a painting", "line_drawing": "a line drawing", "lego": "a LEGO", "pixel_art": "pixel art",
    "cooking": "served on a plate", "emoji": "an emoji", "clay": "a clay", "sand_art": "sand art",
    "origami": "an origami",
}
"""The domain-only text a ReCraft generation is conditioned on (the picture carries the rest)."""


def domain_prompt(domain: str) -> str:
    """The text prompt ReCraft uses for `domain` when the user gives none (the corpus's domain phrase)."""
    return DOMAIN_PROMPTS.get(domain, domain.replace("_", " "))


class ImageToSequencePipeline(ProcessPipeline):
    r"""ReCraft on the FLUX.1 components: finished image -> the earlier frames of its process.

    Shares :class:`ProcessPipeline`'s loading, text encoding, latent preparation and decoding.
    Load the condition LoRA with :meth:`load_recraft` (the embedded model ships one).
    """

    recraft_mode: RecraftMode = "concat"
    recraft_lora: str | None = None

    @classmethod
    def from_process_pipeline(cls, pipe: ProcessPipeline) -> ImageToSequencePipeline:
        """The same components (no copy) as a ReCraft pipeline."""
        out = cls(**pipe.components)
        out.defaults = pipe.defaults
        out.register_to_config(_name_or_path=getattr(pipe.config, "_name_or_path", None))
        return out

    def default_lora(self) -> Path | None:
        """``<model folder>/recraft`` when the loaded checkpoint ships a ReCraft LoRA."""
        name = getattr(self.config, "_name_or_path", None)
        folder = Path(name) / LORA_DIR if name else None
        return folder if folder is not None and (folder / LORA_FILE).is_file() else None

    def load_recraft(self, path: str | Path | None = None) -> ImageToSequencePipeline:
        """Load a ReCraft LoRA (a folder with ``pytorch_lora_weights.safetensors`` [+ ``recraft.json``],
        or the file itself) as peft adapter ``"recraft"``; default: the checkpoint's own ``recraft/``."""
        path = Path(path) if path is not None else self.default_lora()
        if path is None:
            raise FileNotFoundError("This model ships no ReCraft LoRA; train one with `procseq train recraft "
                                    "CONFIG` and pass --lora DIR.")
        folder, weight = (path, LORA_FILE) if path.is_dir() else (path.parent, path.name)
        if not (folder / weight).is_file():
            raise FileNotFoundError(f"No ReCraft LoRA at {folder / weight}; pass the folder written by "
                                    "`procseq train recraft` (…/model) or its .safetensors file.")
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # the file has transformer keys only: no "no CLIP keys" warning
        try:
            self.load_lora_weights(str(folder), weight_name=weight, adapter_name=ADAPTER_NAME)
        finally:
            diffusers_logging.set_verbosity(level)
        meta = folder / LORA_META
        if meta.is_file():
            self.recraft_mode = json.loads(meta.read_text()).get("mode", "concat")
        self.recraft_lora = str(folder / weight)
        return self

    @property
    def default_domain(self) -> str:
        """The model's first domain (``painting`` for procseq-tiny and for models without a domain list)."""
        return self.defaults.domains[0] if self.defaults.domains else "painting"

    @torch.no_grad()
    def encode_condition(self, image: Image.Image) -> torch.Tensor:
        """A frame-sized RGB image -> packed clean latent tokens ``(1, (S/2s)**2, 4C)`` (VAE mode, shifted, scaled)."""
        pixels = self.image_processor.preprocess(image, height=image.height, width=image.width)
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        lat = self.vae.encode(pixels).latent_dist.mode()
        lat = (lat - self.vae.config.shift_factor) * self.vae.config.scaling_factor
        return pack_latents(lat.float())

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        image: Image.Image | str | Path,
        domain: str | None = None,
        frames: int = 9,
        prompt: str | None = None,
        extend: int = 0,
        mode: RecraftMode | None = None,
        cache_condition: bool = True,
        frame_size: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        max_sequence_length: int | None = None,
        planner: Planner = template_plan,
        max_pixels: int = MAX_PIXELS,
    ) -> SequenceOutput:
        r"""Generate the process that ends in `image`.

        Args:
            image: the finished artifact: a PIL image or a PNG/JPEG/WebP path (:mod:`procseq.images` policy).
            domain: the process domain (default: :attr:`default_domain`).
            frames: frames of the output grid, the input included as the last one.
            prompt: extra text (default: the domain phrase, :func:`domain_prompt`).
            extend: predict `extend` more frames before the first one, recursively (each round conditions on
                the earliest frame so far); the output then has ``frames + extend`` frames.
            mode: ``"concat"`` (condition tokens) or ``"inplace"`` (default: the loaded LoRA's mode).
            cache_condition: compute the condition branch once (True) or at every step (False; same output).
            frame_size, num_inference_steps, guidance_scale, max_sequence_length: as in :class:`ProcessPipeline`.
            generator: torch generator for the noise (deterministic per seed).
            planner: the step planner for captions.
            max_pixels: largest accepted input image.

        Returns:
            :class:`~procseq.sequence.SequenceOutput` with one sequence (``frames + extend`` frames).
        """
        d = self.defaults
        domain = domain or self.default_domain
        mode = mode or self.recraft_mode
        if mode not in MODES:
            raise ValueError(f"Unknown ReCraft mode {mode!r}; use one of {', '.join(MODES)}.")
        if not isinstance(extend, int) or extend < 0:
            raise ValueError(f"extend must be a whole number >= 0, got {extend!r}.")
        frame_size = frame_size or d.frame_size_for(frames)
        text = domain_prompt(domain) if prompt is None else prompt
        self.check_sequence_inputs([text or domain], domain, frames, frame_size)
        t0 = time.perf_counter()
        if isinstance(image, (str, Path)):
            final = load_image(image, frame_size, max_pixels)
        elif isinstance(image, Image.Image):
            final = prepare_image(image, frame_size)
        else:
            raise TypeError(f"image must be a PIL image or a file path, got {type(image).__name__}.")
        settings: dict[str, Any] = {
            "domain": domain, "frames": frames + extend, "grid_frames": frames, "extend": extend,
            "frame_size": frame_size, "mode": mode, "cache_condition": cache_condition, "prompt": text,
            "lora": self.recraft_lora, "num_inference_steps": num_inference_steps or d.num_inference_steps,
            "guidance_scale": d.guidance_scale if guidance_scale is None else guidance_scale,
        }
        timings = {"condition": 0.0, "denoise": 0.0, "decode": 0.0}
        gen_args = {"frames": frames, "text": text, "mode": mode, "cache_condition": cache_condition,
                    "frame_size": frame_size, "steps": settings["num_inference_steps"],
                    "guidance_scale": settings["guidance_scale"], "generator": generator,
                    "max_sequence_length": max_sequence_length or d.max_sequence_length, "timings": timings}
        out = self.generate_grid(final, **gen_args)
        remaining = extend
        while remaining > 0:
            k = min(remaining, frames - 1)
            earlier = self.generate_grid(out[0], **gen_args)
            out = earlier[frames - 1 - k : frames - 1] + out
            remaining -= k
        timings["total"] = time.perf_counter() - t0
        settings["timings_s"] = timings
        return SequenceOutput(frames=[out], captions=[planner(text, domain, len(out))], grid=[frames_to_grid(out)],
                              metadata=[settings])

    def generate_grid(self, final: Image.Image, frames: int, text: str, mode: RecraftMode, cache_condition: bool,
                      frame_size: int, steps: int, guidance_scale: float, generator: torch.Generator | None,
                      max_sequence_length: int, timings: dict[str, float]) -> list[Image.Image]:
        """One grid of `frames` frames whose last frame is `final` (a `frame_size` RGB image)."""
        t0 = time.perf_counter()
        layout = GridLayout.for_frames(frames)
        height, width = layout.grid_size(frame_size)
        device = self._execution_device
        cond = self.encode_text([text], max_sequence_length)
        branch_pooled = self.encode_text([""], max_sequence_length).pooled_prompt_embeds
        cond_tokens = self.encode_condition(final).to(cond.prompt_embeds.dtype)
        latents, _ = self.prepare_latents(1, self.transformer.config.in_channels // 4, height, width,
                                          cond.prompt_embeds.dtype, device, generator, None)
        frame_tokens = frame_size // (self.vae_scale_factor * 2)
        img_ids = grid_position_ids(layout, frame_tokens).to(device=device, dtype=cond.prompt_embeds.dtype)
        cond_ids = condition_position_ids(layout, frame_tokens).to(img_ids)
        final_idx = frame_token_indices(layout, frame_tokens)[-1].to(device)
        timesteps = flux_timesteps(self.scheduler, steps, latents.shape[1], device)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full([1], guidance_scale, device=device, dtype=torch.float32)
        t_prep = time.perf_counter()
        common = {"guidance_scale": guidance_scale}
        if mode == "inplace":
            def overwrite(_: int, lat: torch.Tensor) -> torch.Tensor:
                lat = lat.clone()
                lat[:, final_idx] = cond_tokens
                return lat

            latents = denoise(self.transformer, self.scheduler, latents, img_ids, cond, timesteps,
                              before_step=overwrite, **common)
            t_cond = t_prep
        else:
            with condition_processors(self.transformer) as cache:
                def branch() -> None:
                    run_condition_pass(self.transformer, cache, cond_tokens, cond_ids, branch_pooled, guidance)

                if cache_condition:
                    branch()
                t_cond = time.perf_counter()

                def recompute(_: int, lat: torch.Tensor) -> torch.Tensor:
                    branch()
                    return lat

                with cache.as_mode("use"), adapters_enabled(self.transformer, False):
                    latents = denoise(self.transformer, self.scheduler, latents, img_ids, cond, timesteps,
                                      before_step=None if cache_condition else recompute, **common)
        t_denoise = time.perf_counter()
        grid = self.decode_grid(latents, height, width)[0]
        out = grid_to_frames(grid, frames, layout.rows, layout.cols)
        out[-1] = final.copy()
        timings["condition"] += t_cond - t_prep
        timings["denoise"] += t_denoise - t_cond
        timings["decode"] += time.perf_counter() - t_denoise
        timings["prepare"] = timings.get("prepare", 0.0) + t_prep - t0
        return out


def load_recraft_pipeline(model: str | Path | None = None, lora: str | Path | None = None, use_lora: bool = True,
                          **kwargs: Any) -> ImageToSequencePipeline:
    """:func:`procseq.models.loading.load_pipeline` as an :class:`ImageToSequencePipeline`, with its ReCraft LoRA.

    Args:
        model: as for ``load_pipeline`` (default: the embedded procseq-tiny).
        lora: a ReCraft LoRA folder or file (default: the model's own ``recraft/``, if it ships one).
        use_lora: False runs without any LoRA (the untrained condition branch).
        kwargs: passed to ``load_pipeline`` (dtype, device, cpu_offload).
    """
    from procseq.models.loading import load_pipeline

    # ReCraft works on the base model's domains: the multi-domain adapters of procseq.adapters stay off.
    pipe = load_pipeline(model, adapters="none", pipeline_class=ImageToSequencePipeline, **kwargs)
    assert isinstance(pipe, ImageToSequencePipeline)
    if use_lora and (lora is not None or pipe.default_lora() is not None):
        pipe.load_recraft(lora)
    return pipe


__all__ = ["DOMAIN_PROMPTS", "MODES", "ImageToSequencePipeline", "domain_prompt", "load_recraft_pipeline"]
