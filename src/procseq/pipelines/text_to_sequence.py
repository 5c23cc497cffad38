"""ProcessPipeline: a prompt (or a plan, or some known frames) becomes a procedural sequence."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from procseq.adapters.routing import adapter_layers, bypassed, route
from procseq.conditioning.frames import KNOWN_MODES, KnownFrames, KnownImage, KnownMode
from procseq.conditioning.loras import KNOWN_FRAMES, LoraRegistry
from procseq.conditioning.text import StepText, TextConditioning, encode_steps
from procseq.layout import GridLayout
from procseq.layouts import FrameByFrameOptions, Layout, RegionalConfig, make_layout
from procseq.layouts.base import LayoutInputs, Sampler
from procseq.layouts.one_pass import OnePassLayout
from procseq.layouts.regional import REGIONAL_MAX_FRAMES
from procseq.models.codec import decode_latents
from procseq.models.loading import ModelDefaults
from procseq.pipelines.folder import ProcseqFolderMixin
from procseq.pipelines.output import OUTPUT_TYPES, SequenceOutput
from procseq.planning import Plan, Planner, corpus_plan, make_plan
from procseq.progress import plans_made
from procseq.quiet import quiet_loading
from procseq.sequence import MODES

with quiet_loading():  # transformers' torchvision notices for image processors procseq never uses
    from diffusers import FluxPipeline

StepEndCallback = Callable[[Any, int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class Request:
    """One call's settings, resolved against the model's defaults (:meth:`ProcessPipeline.resolve_request`)."""

    prompts: list[str]
    encoded: list[str]
    encoded_2: list[str] | None
    negatives: list[str] | None
    domain: str
    frames: int
    frame_size: int
    guidance_scale: float
    true_cfg_scale: float
    max_sequence_length: int


class ProcessPipeline(ProcseqFolderMixin, FluxPipeline):
    r"""Procedural sequences on the FLUX.1 components.

    The frames of one process are generated together as one in-context grid in serpentine order
    (:mod:`procseq.layout`); for a plain prompt the grid is exactly what ``diffusers.FluxPipeline``
    generates at the grid's size. Frames given in `known` (any cells) condition the others
    (:mod:`procseq.conditioning.frames`). It loads any Flux checkpoint in diffusers folder format,
    ``ProcessPipeline.from_pretrained("procseq-tiny")`` included, and inherits FluxPipeline's prompt
    encoding, LoRA loading and CPU offload; loading and saving folders is :class:`~procseq.pipelines.folder.
    ProcseqFolderMixin`'s.

    Components are those of :class:`diffusers.FluxPipeline`.
    """

    _defaults: ModelDefaults | None = None
    _loras: LoraRegistry | None = None
    auto_condition_lora: bool = True
    """Load the model's own condition LoRA on the first call with known frames (False: run without one)."""
    batch_cfg: bool | None = None
    """True CFG's two branches in one batch (:func:`~procseq.layouts.sampling.denoise`): None where it is safe
    (the default), False for two passes (bit for bit FluxPipeline's loop; the speed comparison)."""

    @property
    def defaults(self) -> ModelDefaults:
        """Native frame size, frame limit and sampling defaults of the loaded checkpoint."""
        if self._defaults is None:
            self._defaults = ModelDefaults.from_folder(self.model_folder)
        return self._defaults

    @defaults.setter
    def defaults(self, value: ModelDefaults) -> None:
        self._defaults = value

    # -- adapters ------------------------------------------------------------------------------

    @property
    def adapter_domains(self) -> list[str]:
        """Domains of the procseq adapters on the transformer (:mod:`procseq.adapters`); empty without any."""
        self.ensure_adapters()
        layers = adapter_layers(self.transformer)
        return list(next(iter(layers.values())).domain_names) if layers else []

    @property
    def known_domains(self) -> list[str]:
        """The base model's domains followed by its adapters' domains (empty: the model takes any name)."""
        base = list(self.defaults.domains)
        return base + [d for d in self.adapter_domains if d not in base] if base else []

    def adapter_routing(self, domain: str, adapter_weights: Mapping[str, float] | None = None
                        ) -> AbstractContextManager[Any]:
        """The routing of the procseq adapters for `domain` (a context manager; a no-op without adapters).

        * `adapter_weights` given: that mix of adapter domains (e.g. ``{"lego": 0.7, "clay": 0.3}``);
        * `domain` is an adapter domain: its ``B`` (asymmetric) or its rows (masked);
        * `domain` is a base domain: no routing, the exact base model;
        * an unseen domain: a masked LoRA's shared rows only (its domain mask removed), else the base.
        """
        names = self.adapter_domains
        if not names:
            if adapter_weights:
                raise ValueError("adapter_weights needs procseq adapters on the model; load a file first "
                                 "(load_pipeline(..., adapters=FILE) or --adapters FILE).")
            return nullcontext()
        if adapter_weights:
            return route(self.transformer, weights=dict(adapter_weights))
        if domain in names:
            return route(self.transformer, domains=domain)
        masked = next(iter(adapter_layers(self.transformer).values())).supports_unseen
        if domain not in self.defaults.domains and masked:
            return route(self.transformer, domains=domain, unseen="shared")
        return bypassed(self.transformer)  # the exact base model, at its speed: the adapters out of the model

    _pinned_device: torch.device | None = None

    @property
    def _execution_device(self) -> torch.device:
        """diffusers' execution device; inside :meth:`device_pinned` the one found when it opened (diffusers walks every
        component's modules to find it: about 2 ms each time on procseq-tiny, read several times per call)."""
        return self._pinned_device if self._pinned_device is not None else FluxPipeline._execution_device.fget(self)

    @contextmanager
    def device_pinned(self) -> Iterator[None]:
        """Within (a generation), :attr:`_execution_device` is looked up once."""
        outer, self._pinned_device = self._pinned_device, self._execution_device
        try:
            yield
        finally:
            self._pinned_device = outer

    @property
    def loras(self) -> LoraRegistry:
        """procseq's own LoRAs of this pipeline (known frames, regional, frame by frame): what is loaded, and the
        switch that puts each in the passes that want it (:mod:`procseq.conditioning.loras`)."""
        if self._loras is None:
            self._loras = LoraRegistry(self)
        return self._loras

    @property
    def condition_lora(self) -> dict[str, Any] | None:
        """Metadata of the loaded condition LoRA (``mode``, ``path``...), or None."""
        return self.loras.info(KNOWN_FRAMES)

    def load_condition_lora(self, path: str | Path | None = None, resident: bool = False) -> ProcessPipeline:
        """Load the LoRA that reads known frames (default: the model's own ``known_frames/``). It enters the model only
        for the passes that use it; `resident` keeps it in the model between calls (off there), as diffusers'
        ``load_lora_weights`` would, e.g. to ``set_adapters`` it by hand."""
        self.loras.load(KNOWN_FRAMES, path, resident=resident)
        return self

    def default_known_mode(self, known: tuple[int, ...] | None = None, frames: int | None = None) -> KnownMode:
        """How known frames condition by default: what measured best per use (BENCHMARKS.md, "Known frames").

        * a condition LoRA trained on other known sets too (its metadata's ``subsets`` name more than ``last``):
          its mode;
        * a last-cell LoRA (ReCraft's: no ``subsets``, or ``last`` alone): ``concat`` when only the last cell is
          known, and ``inplace`` with the LoRA off for any other set (continuation, interpolation), where that
          LoRA measured worse than none;
        * no LoRA: the mode the base was trained with known frames in (procseq.json ``known_mode``, a model that
          learnt every layout), else ``concat`` (in-place measured within noise of it on v2).
        """
        meta = self.condition_lora or {}
        mode = meta.get("mode", self.defaults.known_mode or "concat")
        mode = mode if mode in KNOWN_MODES else "concat"
        subsets = {k for k, w in (meta.get("subsets") or {}).items() if w}
        last_cell_lora = bool(meta) and subsets <= {"last"}
        if last_cell_lora and known is not None and frames is not None and tuple(known) != (frames - 1,):
            return "inplace"
        return mode

    # -- inputs --------------------------------------------------------------------------------

    def check_sequence_inputs(self, prompts: list[str], domain: str, frames: int, frame_size: int,
                              allow_unseen: bool = False, max_frames: int | None = None) -> None:
        """Raise ``ValueError`` with the fix when a request cannot be generated (`max_frames`: the mode's limit,
        default the model's ``max_frames``)."""
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("The prompt is empty; describe the finished artifact, e.g. 'a red lego house'.")
        if not domain or not isinstance(domain, str):
            raise ValueError("Pass the domain explicitly, e.g. domain='painting'.")
        known = self.known_domains
        if known and domain not in known and not allow_unseen:
            raise ValueError(f"Unknown domain {domain!r} for this model; choose one of: {', '.join(known)} "
                             f"(or allow_unseen=True to test generalisation to a new domain).")
        limit = max_frames or self.defaults.max_frames
        if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= limit:
            hint = (f"; for more steps use mode='regional' (--mode regional, up to {REGIONAL_MAX_FRAMES})"
                    if max_frames is None and isinstance(frames, int) and frames > limit else "")
            raise ValueError(f"frames must be between 2 and {limit} for this model, got {frames}{hint}.")
        multiple = self.vae_scale_factor * 2
        if frame_size < multiple or frame_size % multiple:
            raise ValueError(f"frame_size must be a positive multiple of {multiple} for this model, got {frame_size}.")

    def text_length(self, texts: list[str]) -> int:
        """T5 tokens to encode `texts` with: the model's ``max_sequence_length``, or with
        ``text_padding="longest"`` (procseq.json) only as many as the longest of `texts` needs."""
        d = self.defaults
        if d.text_padding != "longest" or self.tokenizer_2 is None:
            return d.max_sequence_length
        ids = self.tokenizer_2(list(texts), truncation=True, max_length=d.max_sequence_length).input_ids
        return max(1, *(len(x) for x in ids))

    def encode_text(self, prompts: list[str], max_sequence_length: int,
                    prompts_2: list[str] | None = None) -> TextConditioning:
        """Encode prompts with CLIP (pooled) and T5 (tokens; `prompts_2` if given), as FluxPipeline does."""
        embeds, pooled, text_ids = self.encode_prompt(
            prompt=prompts, prompt_2=prompts_2, device=self._execution_device, max_sequence_length=max_sequence_length
        )
        return TextConditioning(embeds, pooled, text_ids)

    def encode_sequence_prompt(self, prompt: str | list[str], domain: str, frames: int = 9,
                               max_sequence_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompt_embeds, pooled_prompt_embeds)`` of the text the model reads for `prompt` (with the domain phrase
        where the model was trained with one), to pass back as ``prompt_embeds``/``pooled_prompt_embeds``."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        encoded = self.defaults.model_prompts(prompts, domain, frames)
        text = self.encode_text(encoded, max_sequence_length or self.text_length(encoded))
        return text.prompt_embeds, text.pooled_prompt_embeds

    def frame_size_for_grid(self, frames: int, height: int | None, width: int | None) -> int:
        """The frame side for an output grid of ``height x width`` pixels holding `frames` cells (FluxPipeline's
        ``height``/``width``): each side divided by the layout's rows/columns, rounded down to the model's multiple;
        the two must agree (frames are square)."""
        for name, value in (("height", height), ("width", width)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}.")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}.")
        layout = GridLayout.for_frames(frames)
        multiple = self.vae_scale_factor * 2
        sizes = {name: (value // cells) // multiple * multiple
                 for name, value, cells in (("height", height, layout.rows), ("width", width, layout.cols))
                 if value is not None}
        for name, size in sizes.items():
            if size < multiple:
                raise ValueError(f"{name} is too small for {frames} frames in a {layout.rows}x{layout.cols} grid: "
                                 f"each frame needs at least {multiple} px; pass a larger {name} or frame_size.")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"height {height} and width {width} give frames of {sizes['height']} and "
                             f"{sizes['width']} px in a {layout.rows}x{layout.cols} grid; frames are square: pass "
                             f"height={sizes['height'] * layout.rows} and width={sizes['height'] * layout.cols}.")
        return next(iter(sizes.values()))

    def note_unknown_words(self, plans: list[Plan], prompts: list[str]) -> None:
        """For a model that reads only the corpus's words (procseq-tiny), record in each plan's
        ``meta["unknown_words"]`` the words of its prompt the model cannot know (DESIGN.md #16); a model with real
        text encoders records nothing."""
        from procseq.planning.vocabulary import corpus_words, reports_unknown_words, tokenizer_words, unknown_words

        if not reports_unknown_words(self.defaults):
            for plan in plans:
                plan.meta.pop("unknown_words", None)
            return
        cached = self.__dict__.get("_known_words")
        if cached is None or cached[0] is not self.tokenizer:  # the words a call may use: once per tokenizer
            cached = self.__dict__["_known_words"] = (self.tokenizer, corpus_words() | tokenizer_words(self.tokenizer))
        known = cached[1]
        for plan, prompt in zip(plans, prompts):
            plan.meta["unknown_words"] = unknown_words(prompt, known)

    def make_plans(self, prompts: list[str], domain: str, frames: int, plan: Plan | list[Plan] | None,
                   captions: list[str] | None, planner: Planner) -> list[Plan]:
        """One plan per prompt, before anything is encoded: given, from `captions`, or from `planner`."""
        if plan is not None:
            plans = [plan] * len(prompts) if isinstance(plan, Plan) else list(plan)
            if len(plans) != len(prompts):
                raise ValueError(f"Got {len(plans)} plans for {len(prompts)} prompts; pass one plan per prompt.")
        elif captions is not None:
            plans = [Plan(p, domain, list(captions)) for p in prompts]
        else:
            plans = [make_plan(planner, p, domain, frames) for p in prompts]
        for p in plans:
            if p.num_steps != frames:
                raise ValueError(f"The plan has {p.num_steps} steps but {frames} frames were asked for; "
                                 "pass one caption per frame (or frames=len(plan.captions)).")
        self.note_unknown_words(plans, prompts)
        plans_made(plans)  # shown by an open procseq.progress.show_progress (the command line, the app)
        return plans

    def prepare_known(self, known: Mapping[int, KnownImage] | KnownFrames | None, frames: int, frame_size: int,
                      max_pixels: int | None) -> KnownFrames | None:
        """Known frames from ``{index: image or path}`` (loaded by the :mod:`procseq.images` policy)."""
        if known is None or isinstance(known, KnownFrames):
            return known
        if not isinstance(known, Mapping):
            raise ValueError("known must map frame indices to images, e.g. known={0: 'first.png'}.")
        return KnownFrames.from_images(self.vae, known, frames, frame_size, max_pixels)

    # -- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        domain: str | None = None,
        frames: int | None = None,
        frame_size: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        true_cfg_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
        captions: list[str] | None = None,
        plan: Plan | list[Plan] | None = None,
        planner: Planner = corpus_plan,
        known: Mapping[int, KnownImage] | KnownFrames | None = None,
        known_mode: KnownMode | None = None,
        cache_condition: bool = True,
        joint_attention_kwargs: dict[str, Any] | None = None,
        autocast_dtype: torch.dtype | None = None,
        adapter_weights: Mapping[str, float] | None = None,
        allow_unseen: bool = False,
        max_pixels: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
        mode: str | Layout = "grid",
        regional: RegionalConfig | None = None,
        *,
        frame_by_frame: FrameByFrameOptions | None = None,
        prompt_2: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_images_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
    ) -> SequenceOutput | tuple[Any, ...]:
        r"""Generate one procedural sequence per prompt.

        Args:
            prompt: the finished artifact, e.g. ``"a red lego house"`` (or a list, one sequence each;
                default: the plan's title).
            domain: the process domain (``"painting"``, ``"lego"``...), an explicit argument (default: the
                plan's, else ``"painting"``).
            frames: number of steps (2..the model's ``max_frames``; default: the plan's, else 9).
            frame_size: side of one frame in pixels (default: the model's native size).
            num_inference_steps, guidance_scale: sampling settings (default: the model's).
            negative_prompt, true_cfg_scale: true classifier-free guidance when ``true_cfg_scale > 1`` (default:
                the model's ``true_cfg_scale``; the negative prompt defaults to ``""``, the caption-dropout prompt).
            generator: torch generator(s) for the initial noise (deterministic per seed).
            latents: packed initial noise ``(B, seq, 4C)`` instead of sampling it.
            max_sequence_length: T5 tokens (default: the model's).
            captions: per-step captions (a plan with these steps); `plan`: the :class:`Plan` itself (one, or one
                per prompt); otherwise ``planner(prompt, domain, frames)`` writes it before anything is encoded.
            known: frames given as images ``{index: PIL image or path}`` (any cells, not all), the others are
                generated to fit them; the output holds the given images at their indices.
            known_mode: ``"concat"`` (condition tokens in their own t=0 pass, K/V cached) or ``"inplace"`` (known
                cells overwritten before every step); default: the condition LoRA's mode.
            cache_condition: compute the known frames' condition pass once (True) or at every step (same output).
            joint_attention_kwargs: extra inputs for the attention processors.
            autocast_dtype: run the transformer under ``torch.autocast`` with this dtype (bf16 on CPU).
            adapter_weights: a mix of adapter domains instead of `domain`'s own adapter (see
                :meth:`adapter_routing`), e.g. ``{"lego": 0.7, "clay": 0.3}``.
            allow_unseen: accept a domain the model does not know (generalisation tests).
            max_pixels: largest accepted known image (default: :data:`procseq.images.MAX_PIXELS`).
            output_type: ``"pil"`` (default), ``"np"`` (float arrays in [0, 1]), ``"pt"`` (float tensors in [0, 1])
                or ``"latent"`` (packed latents).
            return_dict: return a :class:`SequenceOutput` (True) or the tuple ``(images,)``.
            callback_on_step_end: ``fn(pipe, step, timestep, tensors) -> dict`` after every step, as in diffusers;
                the tensors are `callback_on_step_end_tensor_inputs` (``"latents"``), and a returned
                ``"latents"`` replaces them.
            mode: the layout (DESIGN.md #12, #14): ``"grid"`` (the serpentine grid, MakeAnything), ``"regional"`` (each
                frame its own region driven by its step caption, any number of frames; CookAnything,
                :mod:`procseq.layouts.regional`) or ``"frame-by-frame"`` (one frame per pass, any number of frames;
                Loom, :mod:`procseq.layouts.frame_by_frame`), or a :class:`~procseq.layouts.base.Layout` object.
            regional: the regional layout's settings (:class:`~procseq.layouts.regional.RegionalConfig`).
            frame_by_frame: the frame-by-frame layout's (:class:`~procseq.layouts.frame_by_frame.FrameByFrameOptions`:
                history, ablation switches, a weights folder).
            prompt_2: the text for T5 (FluxPipeline's meaning; default: `prompt`).
            height, width: the size of the output grid (``images``), as in FluxPipeline: the frames are
                ``height / rows`` pixels square (rounded down to the model's multiple) in the layout's grid of
                `frames` cells; an alternative to `frame_size`.
            num_images_per_prompt: sequences per prompt (the output holds ``len(prompts) * n`` of them).
            prompt_embeds, pooled_prompt_embeds: the encoded text the model reads, instead of `prompt` (grid
                layout); :meth:`encode_sequence_prompt` writes them as the pipeline would. `prompt` is then only the
                plan's title (optional).

        Returns:
            :class:`~procseq.sequence.SequenceOutput` (frames, captions, grids as ``images``, plans, metadata).
        """
        # 1. Check the inputs that need no model state; expand the batch (num_images_per_prompt)
        layout = make_layout(mode, regional if regional is not None else frame_by_frame)
        self.check_call_inputs(layout, output_type, prompt_embeds, pooled_prompt_embeds,
                               callback_on_step_end_tensor_inputs, num_images_per_prompt)
        prompt, prompt_2, plan = (_repeat(x, num_images_per_prompt) for x in (prompt, prompt_2, plan))
        if isinstance(generator, list):  # one per prompt -> one per sequence (a single one draws for all)
            generator = _repeat(generator, num_images_per_prompt)
        if prompt_embeds is not None and num_images_per_prompt > 1:
            prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
            pooled_prompt_embeds = pooled_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)

        # 2. Resolve the request against the model's defaults
        req = self.resolve_request(layout, prompt, prompt_2, domain, frames, frame_size, height, width, plan, captions,
                                   guidance_scale, true_cfg_scale, negative_prompt, max_sequence_length, prompt_embeds,
                                   allow_unseen)

        # 3. Plan: one per sequence, before anything is encoded
        plans = self.make_plans(req.prompts, req.domain, req.frames, plan, captions, planner)

        # 4. Known frames and how they condition
        known_frames = self.prepare_known(known, req.frames, req.frame_size, max_pixels)
        known_mode = self.resolve_known_mode(known_frames, known_mode, req.frames)

        # 5. Prepare the layout, denoise, decode (group by group: a layout may run its sequences apart)
        inputs = LayoutInputs(
            plans=plans, prompts=req.encoded, frames=req.frames, frame_tokens=req.frame_size // (
                self.vae_scale_factor * 2), frame_size=req.frame_size, max_sequence_length=req.max_sequence_length,
            step_tokens=self.defaults.step_tokens, grid_step_text=self.defaults.grid_step_text, known=known_frames,
            known_mode=known_mode,
            negative_prompts=req.negatives, prompts_2=req.encoded_2,
            text=None if prompt_embeds is None else TextConditioning.from_embeds(
                prompt_embeds, pooled_prompt_embeds, self._execution_device, self.transformer.dtype),
            joint_attention_kwargs=dict(joint_attention_kwargs or {}))
        steps = num_inference_steps or self.defaults.num_inference_steps
        sampler = Sampler(steps, req.guidance_scale, req.true_cfg_scale, generator, latents, autocast_dtype,
                          self.batch_cfg, None, cache_condition)
        with self.adapter_routing(req.domain, adapter_weights), self.device_pinned():
            results, timings, cpu_denoise = self.run_layout(layout, inputs, sampler, output_type, callback_on_step_end)
        self.maybe_free_model_hooks()

        # 6. Output: the same SequenceOutput in every layout
        cond = results[0][0]
        settings: dict[str, Any] = {
            "domain": req.domain, "frames": req.frames, "frame_size": req.frame_size, **layout.settings(self, cond),
            "num_inference_steps": steps, "guidance_scale": req.guidance_scale, "true_cfg_scale": req.true_cfg_scale,
            **({"adapter_weights": dict(adapter_weights)} if adapter_weights else {}),
            **({"known_frames": list(known_frames.indices), "known_mode": known_mode,
                "condition_lora": (self.condition_lora or {}).get("path")} if known_frames is not None else {}),
            "cpu_s": {"denoise": cpu_denoise},  # this process's CPU time (all threads)
            "timings_s": {**timings, "total": sum(timings.values()), **cond.layout_state.get("timings", {})},
        }
        captions_out = [p.captions for p in plans]
        if output_type == "latent":
            stacked = torch.cat([r[1] for r in results])
            out = SequenceOutput(images=stacked, frames=[], captions=captions_out,
                                 metadata=[dict(settings) for _ in plans], plans=plans, latents=stacked)
            return out if return_dict else (stacked,)
        out = SequenceOutput(images=[g for r in results for g in r[2][1]], frames=[f for r in results for f in r[2][0]],
                             captions=captions_out, metadata=[json.loads(json.dumps(settings)) for _ in plans],
                             plans=plans).converted(output_type)
        return out if return_dict else (out.images,)

    def check_call_inputs(self, layout: Layout, output_type: str, prompt_embeds: torch.Tensor | None,
                          pooled_prompt_embeds: torch.Tensor | None, callback_inputs: list[str] | tuple[str, ...],
                          num_images_per_prompt: int) -> None:
        """Raise ``ValueError`` for a call that cannot run whatever the model (stage 1 of ``__call__``)."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}.")
        if output_type == "latent" and not isinstance(layout, OnePassLayout):
            raise ValueError(f"output_type='latent' needs a one-pass layout (grid, regional), not {layout.name}.")
        if prompt_embeds is not None and (pooled_prompt_embeds is None or not layout.reads_prompt_embeds):
            raise ValueError("prompt_embeds needs pooled_prompt_embeds too, and works in the grid layout; "
                             "pass prompt instead for mode='regional' or 'frame-by-frame'.")
        unknown_inputs = set(callback_inputs) - {"latents"}
        if unknown_inputs:
            raise ValueError(f"callback_on_step_end_tensor_inputs may only name 'latents', got {sorted(unknown_inputs)}.")
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int) \
                or not 1 <= num_images_per_prompt <= 64:
            raise ValueError(f"num_images_per_prompt must be an integer in 1..64, got {num_images_per_prompt!r}.")

    def resolve_request(self, layout: Layout, prompt: str | list[str] | None, prompt_2: str | list[str] | None,
                        domain: str | None, frames: int | None, frame_size: int | None, height: int | None,
                        width: int | None, plan: Plan | list[Plan] | None, captions: list[str] | None,
                        guidance_scale: float | None, true_cfg_scale: float | None,
                        negative_prompt: str | list[str] | None, max_sequence_length: int | None,
                        prompt_embeds: torch.Tensor | None, allow_unseen: bool) -> Request:
        """The call's settings with the model's defaults filled in, checked (stage 2 of ``__call__``)."""
        first_plan = plan if isinstance(plan, Plan) else (plan[0] if plan else None)
        if prompt is None:
            if first_plan is None and prompt_embeds is None:
                raise ValueError("Pass a prompt (or a plan).")
            title = first_plan.title if first_plan else (domain or "painting")
            count = prompt_embeds.shape[0] if prompt_embeds is not None else 1
            prompt = [p.title for p in plan] if isinstance(plan, list) else [title] * count
        domain = domain or (first_plan.domain if first_plan else "painting")
        frames = frames or (first_plan.num_steps if first_plan else len(captions) if captions else 9)
        if frame_size is None and (height is not None or width is not None):
            frame_size = self.frame_size_for_grid(frames, height, width)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        d = self.defaults
        frame_size = frame_size or layout.frame_size(d, frames)
        guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
        true_cfg_scale = d.true_cfg_scale if true_cfg_scale is None else true_cfg_scale
        if true_cfg_scale > 1 and negative_prompt is None:
            negative_prompt = ""
        negatives = None if true_cfg_scale <= 1 or negative_prompt is None else (
            [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt))
        if negatives is not None and len(negatives) != len(prompts):
            raise ValueError(f"Got {len(negatives)} negative prompts for {len(prompts)} prompts; pass one per prompt.")
        encoded = d.model_prompts(prompts, domain, frames)  # what the model reads (procseq.domain_prompt)
        encoded_2 = d.model_prompts([prompt_2] * len(prompts) if isinstance(prompt_2, str) else list(prompt_2),
                                    domain, frames) if prompt_2 is not None else None
        if encoded_2 is not None and len(encoded_2) != len(prompts):
            raise ValueError(f"Got {len(encoded_2)} prompt_2 for {len(prompts)} prompts; pass one per prompt.")
        if prompt_embeds is not None and prompt_embeds.shape[0] != len(prompts):
            raise ValueError(f"prompt_embeds holds {prompt_embeds.shape[0]} prompts but {len(prompts)} prompts or "
                             "plans were given; pass one of each.")
        max_sequence_length = max_sequence_length or self.text_length(encoded + (negatives or []))
        self.check_sequence_inputs(prompts, domain, frames, frame_size, allow_unseen,
                                   max_frames=layout.max_frames)
        layout.check(self, frames, frame_size, max_sequence_length)
        return Request(prompts, encoded, encoded_2, negatives, domain, frames, frame_size, guidance_scale,
                       true_cfg_scale, max_sequence_length)

    def run_layout(self, layout: Layout, inputs: LayoutInputs, sampler: Sampler, output_type: str,
                   callback_on_step_end: StepEndCallback | None) -> tuple[list[Any], dict[str, float], float]:
        """Stage 5 of ``__call__``: prepare, denoise and decode each group of sequences the layout runs together.
        Returns ``(cond, latents, (frames, grids) or None)`` per group, the wall times and the denoising CPU seconds."""
        gens, groups = sampler.generators(inputs.batch), layout.groups(inputs)
        results, timings, cpu = [], {"encode": 0.0, "denoise": 0.0, "decode": 0.0}, 0.0
        total = sampler.num_inference_steps * layout.denoising_passes(inputs) * len(groups)
        with self.progress_bar(total=total) as bar:
            def after(i: int, t: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
                bar.update()
                if callback_on_step_end is None:
                    return lat
                return (callback_on_step_end(self, i, t, {"latents": lat}) or {}).get("latents", lat)

            for group in groups:
                t0 = time.perf_counter()
                cond = layout.prepare(self, _select(inputs, group), self._execution_device, self.transformer.dtype)
                t1, c1 = time.perf_counter(), time.process_time()
                part = replace(sampler, after_step=after, latents=None if sampler.latents is None else sampler.latents[
                    group], generator=[gens[i] for i in group] if isinstance(sampler.generator, list)
                    else sampler.generator)
                latents = layout.denoise(self, cond, part)
                t2 = time.perf_counter()
                cpu += time.process_time() - c1
                decoded = None if output_type == "latent" else layout.decode(self, latents, cond)
                timings["encode"] += t1 - t0
                timings["denoise"] += t2 - t1
                timings["decode"] += time.perf_counter() - t2
                results.append((cond, latents, decoded))
        return results, timings, cpu

    def resolve_known_mode(self, known: KnownFrames | None, known_mode: KnownMode | None, frames: int) -> KnownMode:
        """How the known frames condition: the given mode, else the default for these cells (loading the model's
        condition LoRA on the first call with known frames, :attr:`auto_condition_lora`)."""
        if (known is not None and self.condition_lora is None and self.auto_condition_lora
                and self.loras.shipped(KNOWN_FRAMES)):
            self.load_condition_lora()
        if known_mode is None:
            known_mode = self.default_known_mode(known.indices if known is not None else None, frames)
        if known_mode not in KNOWN_MODES:
            raise ValueError(f"Unknown known_mode {known_mode!r}; use one of {', '.join(KNOWN_MODES)}.")
        return known_mode

    def encode_steps(self, captions: list[str], max_tokens_per_step: int, whole: bool = False,
                     pad: bool = False) -> StepText:
        """One plan's step captions, each encoded alone by T5 (:func:`procseq.conditioning.text.encode_steps`)."""
        return encode_steps(self, captions, max_tokens_per_step, whole=whole, pad=pad)

    def guidance(self, guidance_scale: float) -> torch.Tensor | None:
        """The guidance vector ``(1,)`` for guidance-distilled checkpoints, else None."""
        if not self.transformer.config.guidance_embeds:
            return None
        return torch.full([1], guidance_scale, device=self._execution_device, dtype=torch.float32)

    def decode_grid(self, latents: torch.Tensor, height: int, width: int) -> list:
        """Packed latents ``(B, seq, 4C)`` -> grid images (PIL), as FluxPipeline decodes."""
        latents = self._unpack_latents(latents, height, width, self.vae_scale_factor)
        return self.image_processor.postprocess(decode_latents(self.vae, latents), output_type="pil")

def register_with_diffusers() -> None:
    """Make ``DiffusionPipeline.from_pretrained`` find this class by the name procseq's folders record in
    ``model_index.json`` (``"_class_name": "ProcessPipeline"``): diffusers looks pipeline classes up by name in its
    own namespace, so the name is added there (done when this module is imported)."""
    import diffusers

    if getattr(diffusers, ProcessPipeline.__name__, None) is not ProcessPipeline:
        setattr(diffusers, ProcessPipeline.__name__, ProcessPipeline)


register_with_diffusers()


def _select(inputs: LayoutInputs, group: list[int]) -> LayoutInputs:
    """The sequences `group` of a request (all of it when the group is the whole batch)."""
    if group == list(range(inputs.batch)):
        return inputs
    pick = (lambda xs: None if xs is None else [xs[i] for i in group])
    known = inputs.known
    if known is not None and known.latents.shape[0] > 1:
        known = replace(known, latents=known.latents[group])
    text = inputs.text
    if text is not None:
        text = TextConditioning(text.prompt_embeds[group], text.pooled_prompt_embeds[group], text.text_ids)
    return replace(inputs, plans=pick(inputs.plans), prompts=pick(inputs.prompts), known=known,
                   negative_prompts=pick(inputs.negative_prompts), text=text, prompts_2=pick(inputs.prompts_2))


def _repeat(value: Any, n: int) -> Any:
    """`value` (a prompt, plan or generator, or a list of them) with each entry repeated `n` times in a row."""
    if n == 1 or value is None:
        return value
    items = value if isinstance(value, list) else [value]
    return [x for x in items for _ in range(n)]


__all__ = ["MODES", "OUTPUT_TYPES", "ProcessPipeline"]
