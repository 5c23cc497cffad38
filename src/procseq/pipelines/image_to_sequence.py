"""ReCraft and continuation: known frames at the ends of the sequence (MakeAnything's ReCraft, generalised).

ReCraft is "the last cell is known": a picture of the finished artifact becomes the process that made
it. Continuation is "the first k cells are known": the user's first steps, and the rest generated.
Both are :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` calls with ``known=`` (the one
known-frames mechanism, :mod:`procseq.conditioning.frames`); this module adds the friendly entry
points, the domain-only prompt and ReCraft's ``extend`` (more frames before the first, recursively).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from procseq.conditioning.frames import KNOWN_MODES, KnownImage, KnownMode
from procseq.domain_prompt import domain_prompt
from procseq.images import MAX_PIXELS, load_image, open_image, prepare_image
from procseq.layout import frames_to_grid
from procseq.planning import Planner, corpus_plan, make_plan
from procseq.planning.parser import parse_prompt
from procseq.planning.reader import picture_planner
from procseq.pipelines.text_to_sequence import ProcessPipeline
from procseq.pipelines.output import SequenceOutput



def _frame(image: KnownImage, frame_size: int, max_pixels: int) -> Image.Image:
    if isinstance(image, (str, Path)):
        return load_image(image, frame_size, max_pixels)
    if isinstance(image, Image.Image):
        return prepare_image(image, frame_size)
    raise TypeError(f"image must be a PIL image or a file path, got {type(image).__name__}.")


def _picture(image: KnownImage, max_pixels: int) -> Image.Image:
    """The picture at its own size (the plan is read from it before it is resized to a frame)."""
    return image if isinstance(image, Image.Image) else open_image(image, max_pixels)


class ImageToSequencePipeline(ProcessPipeline):
    r"""Known frames at the ends: ReCraft (finished image -> its process) and continuation (first steps -> the rest).

    The same components and loading as :class:`ProcessPipeline`; the condition LoRA the model ships
    (``known_frames/``) is loaded on first use, or explicitly with :meth:`load_condition_lora`.
    """

    @classmethod
    def from_process_pipeline(cls, pipe: ProcessPipeline) -> ImageToSequencePipeline:
        """The same components (no copy) as an image-to-sequence pipeline."""
        out = cls(**pipe.components)
        out.defaults = pipe.defaults
        out.register_to_config(_name_or_path=getattr(pipe.config, "_name_or_path", None))
        out._loras = pipe.loras.copy_for(out)  # the same transformer: what is loaded carries over
        return out

    @property
    def default_domain(self) -> str:
        """The model's first domain (``painting`` for procseq-tiny and for models without a domain list)."""
        return self.defaults.domains[0] if self.defaults.domains else "painting"

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        image: KnownImage,
        domain: str | None = None,
        frames: int = 9,
        prompt: str | None = None,
        extend: int = 0,
        known_mode: KnownMode | None = None,
        cache_condition: bool = True,
        frame_size: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        true_cfg_scale: float = 1.0,
        generator: torch.Generator | None = None,
        max_sequence_length: int | None = None,
        planner: Planner = corpus_plan,
        max_pixels: int = MAX_PIXELS,
    ) -> SequenceOutput:
        r"""ReCraft: generate the process that ends in `image` (the last cell is known).

        Args:
            image: the finished artifact: a PIL image or a PNG/JPEG/WebP path (:mod:`procseq.images` policy).
            domain: the process domain (default: :attr:`default_domain`).
            frames: frames of the output grid, the input included as the last one.
            prompt: extra text (default: the domain phrase, :func:`domain_prompt`).
            extend: predict `extend` more frames before the first one, recursively (each round conditions on
                the earliest frame so far); the output then has ``frames + extend`` frames.
            known_mode: ``"concat"`` (condition tokens) or ``"inplace"`` (default: the condition LoRA's mode).
            cache_condition: compute the condition branch once (True) or at every step (False; same output).
            true_cfg_scale: true CFG (default 1: the domain phrase carries little text to guide by).
            frame_size, num_inference_steps, guidance_scale, max_sequence_length, generator, planner: as in
                :class:`ProcessPipeline`.
            max_pixels: largest accepted input image.

        Returns:
            :class:`~procseq.sequence.SequenceOutput` with one sequence (``frames + extend`` frames).
        """
        d = self.defaults
        domain = domain or self.default_domain
        if known_mode is not None and known_mode not in KNOWN_MODES:
            raise ValueError(f"Unknown known_mode {known_mode!r}; use one of {', '.join(KNOWN_MODES)}.")
        if isinstance(extend, bool) or not isinstance(extend, int) or extend < 0:
            raise ValueError(f"extend must be a whole number >= 0, got {extend!r}.")
        frame_size = frame_size or d.frame_size_for(frames)
        text = domain_prompt(domain) if prompt is None else prompt
        self.check_sequence_inputs([text or domain], domain, frames, frame_size)
        t0 = time.perf_counter()
        final = _frame(image, frame_size, max_pixels)
        if planner is corpus_plan:  # the captions describe the picture where the corpus checker can read it
            planner = picture_planner(_picture(image, max_pixels), domain, frames - 1, frames, corpus_plan)
        common: dict[str, Any] = dict(prompt=text or domain, domain=domain, frames=frames, known_mode=known_mode,
                                      cache_condition=cache_condition, frame_size=frame_size,
                                      num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      true_cfg_scale=true_cfg_scale, generator=generator,
                                      max_sequence_length=max_sequence_length, planner=planner)
        first = super().__call__(known={frames - 1: final}, **common)
        out, settings = first.frames[0], dict(first.metadata[0])
        remaining = extend
        while remaining > 0:
            k = min(remaining, frames - 1)
            earlier = super().__call__(known={frames - 1: out[0]}, **common).frames[0]
            out = earlier[frames - 1 - k: frames - 1] + out
            remaining -= k
        settings.update({"frames": frames + extend, "grid_frames": frames, "extend": extend, "prompt": text,
                         "cache_condition": cache_condition})
        settings.setdefault("timings_s", {})["total"] = time.perf_counter() - t0
        plan = make_plan(planner, text or domain, domain, len(out))
        return SequenceOutput(images=[frames_to_grid(out)], frames=[out], captions=[plan.captions],
                              metadata=[settings], plans=[plan])

    def continue_sequence(self, images: list[KnownImage], prompt: str, domain: str | None = None,
                          frames: int = 9, **kwargs: Any) -> SequenceOutput:
        """Continuation: `images` are the first steps (cells ``0..k-1``); the remaining frames are generated."""
        if not images:
            raise ValueError("Give at least one image: the first step(s) of the process.")
        domain = domain or self.default_domain
        if not {"plan", "captions", "planner"} & set(kwargs):  # the plan: the prompt's values, the rest as pictured
            last = _picture(images[-1], kwargs.get("max_pixels", MAX_PIXELS))
            kwargs["planner"] = picture_planner(last, domain, len(images) - 1, frames, corpus_plan,
                                                asked=parse_prompt(domain, prompt))
        return ProcessPipeline.__call__(self, prompt, domain=domain, frames=frames, known=dict(enumerate(images)),
                                        **kwargs)


def load_recraft_pipeline(model: str | Path | None = None, lora: str | Path | None = None, use_lora: bool = True,
                          adapters: str | Path | None = "none", **kwargs: Any) -> ImageToSequencePipeline:
    """:func:`procseq.pipelines.loading.load_pipeline` as an :class:`ImageToSequencePipeline`, with its condition LoRA.

    Args:
        model: as for ``load_pipeline`` (default: the embedded procseq-tiny).
        lora: a condition LoRA folder or file (default: the model's own ``known_frames/``, if it ships one).
        use_lora: False runs without any LoRA (the untrained condition branch).
        adapters: the multi-domain adapters, as for ``load_pipeline`` (default ``"none"``: the base model's domains;
            None loads the model's own, for an adapter domain such as clay).
        kwargs: passed to ``load_pipeline`` (dtype, device, cpu_offload).
    """
    from procseq.conditioning.lora import default_condition_lora
    from procseq.pipelines.loading import load_pipeline

    # Known frames work on the base model's domains: the multi-domain adapters of procseq.adapters stay off
    # unless asked for (an adapter domain).
    pipe = load_pipeline(model, adapters=adapters, pipeline_class=ImageToSequencePipeline, **kwargs)
    assert isinstance(pipe, ImageToSequencePipeline)
    if use_lora and (lora is not None or default_condition_lora(pipe.model_folder) is not None):
        pipe.load_condition_lora(lora)
    elif not use_lora:
        pipe.auto_condition_lora = False
    return pipe


__all__ = ["ImageToSequencePipeline", "load_recraft_pipeline"]
