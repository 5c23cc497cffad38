"""Memory plans computed before any weight loads: components built on the meta device from their config
files, one step traced there, the live bytes counted.

:class:`LiveBytes` is a ``TorchDispatchMode`` that adds the bytes of every new tensor storage and takes
them off when the storage is freed (a weak reference), so its ``peak`` is the high-water mark of tensor
memory. On the meta device nothing is allocated or computed: a FLUX.1-dev training step traces in seconds.
Attention is traced as the fused kernel both CPUs and GPUs run (flash attention: it saves the output
and a log-sum-exp, never the ``seq x seq`` matrix the unfused path would hold), see :func:`fused_attention`.

What a plan leaves out is stated in :attr:`MemoryPlan.notes`: the CUDA context (~0.5 GB per GPU) and the
allocator's fragmentation (typically 5-10 % on a GPU), which a CPU measurement cannot see.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

GB = 1e9
#: Config files of FLUX.1-dev's components (the subfolders' config.json), so a plan needs neither the
#: network nor access to the gated repository. FLUX.1-schnell is the same without the guidance embedding.
FLUX_DEV_CONFIG = Path(__file__).with_name("flux_dev_configs.json")
KNOWN_CONFIGS = {"black-forest-labs/FLUX.1-dev": {}, "black-forest-labs/FLUX.1-schnell": {"guidance_embeds": False}}
KNOWN_TEXT_TOKENS = {"black-forest-labs/FLUX.1-dev": 512, "black-forest-labs/FLUX.1-schnell": 256}


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of live tensor storages created under it (plus those :meth:`add`-ed): ``live``, ``peak``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.live = self.peak = 0

    def add(self, tensor: Any) -> None:
        """Count `tensor`'s storage once, until it is freed."""
        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        if storage in self.seen:
            return
        n = storage.nbytes()
        self.seen[storage] = n
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, n)

    def _free(self, n: int) -> None:
        self.live -= n

    def reset_peak(self) -> None:
        """Start a new high-water mark from the bytes live now."""
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self.add(t)
        return out


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """Trace ``scaled_dot_product_attention`` on meta tensors as the fused flash kernel (what CPUs and GPUs run
    for FLUX's unmasked attention); meta would otherwise take the unfused path and hold ``seq x seq`` scores.
    Masked attention (regional layouts) keeps the unfused path: the plan then over- rather than under-states."""
    original = torch.nn.functional.scaled_dot_product_attention

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):  # noqa: ANN001
        if query.device.type != "meta" or attn_mask is not None or dropout_p or enable_gqa:
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p=0.0, is_causal=is_causal, scale=scale)[0]

    torch.nn.functional.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


def component_configs(model: str) -> dict[str, dict[str, Any]]:
    """``{component: config dict}`` for ``transformer``, ``vae``, ``text_encoder``, ``text_encoder_2`` of a
    diffusers folder (its config.json files only) or of FLUX.1-dev/-schnell (shipped with procseq)."""
    from procseq.models.loading import resolve_model

    if model in KNOWN_CONFIGS:
        configs = json.loads(FLUX_DEV_CONFIG.read_text())
        configs["transformer"].update(KNOWN_CONFIGS[model])
        return configs
    location = Path(resolve_model(model))
    if not location.is_dir():
        raise ValueError(f"A memory plan reads the model's config files; {model} is not a local folder. Pass the "
                         f"folder, or black-forest-labs/FLUX.1-dev (its configs ship with procseq).")
    return {name: json.loads((location / name / "config.json").read_text())
            for name in ("transformer", "vae", "text_encoder", "text_encoder_2")}


def text_tokens(model: str) -> int:
    """The T5 sequence length the pipeline encodes prompts to: FLUX.1-dev 512, a folder's tokenizer_2 maximum."""
    if model in KNOWN_TEXT_TOKENS:
        return KNOWN_TEXT_TOKENS[model]
    from procseq.models.loading import resolve_model

    config = Path(resolve_model(model)) / "tokenizer_2" / "tokenizer_config.json"
    length = json.loads(config.read_text()).get("model_max_length") if config.is_file() else None
    return int(length) if isinstance(length, int) and length < 100_000 else 512


def meta_component(name: str, config: dict[str, Any], dtype: torch.dtype, device: str = "meta") -> torch.nn.Module:
    """One component built on the meta device (no memory, no download) in `dtype`; on another `device` it is built
    there with the classes' own random initialisation, created in `dtype` (no float32 copy first)."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return _build(name, config, device).to(dtype).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(default)


def _build(name: str, config: dict[str, Any], device: str) -> torch.nn.Module:
    with torch.device(device):
        if name == "transformer":
            from diffusers import FluxTransformer2DModel

            module = FluxTransformer2DModel.from_config(config)
        elif name == "vae":
            from diffusers import AutoencoderKL

            module = AutoencoderKL.from_config(config)
        elif name == "text_encoder":
            from transformers import CLIPTextConfig, CLIPTextModel

            module = CLIPTextModel(CLIPTextConfig(**config))
        else:
            from transformers import T5Config, T5EncoderModel

            module = T5EncoderModel(T5Config(**config))
    return module


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages among `tensors`."""
    seen: dict[int, int] = {}
    for t in tensors:
        seen[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
    return sum(seen.values())


def transformer_inputs(model: torch.nn.Module, batch: int, image_tokens: int, text_tokens: int,
                       device: str | torch.device = "meta") -> dict[str, Any]:
    """Keyword arguments of one Flux transformer call of `batch` sequences on `device` (random values)."""
    cfg = model.config
    dtype = next(model.parameters()).dtype
    return dict(
        hidden_states=torch.randn(batch, image_tokens, cfg.in_channels, device=device, dtype=dtype),
        encoder_hidden_states=torch.randn(batch, text_tokens, cfg.joint_attention_dim, device=device, dtype=dtype),
        pooled_projections=torch.randn(batch, cfg.pooled_projection_dim, device=device, dtype=dtype),
        timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
        guidance=torch.ones(batch, device=device, dtype=dtype) if cfg.guidance_embeds else None,
        img_ids=torch.zeros(image_tokens, 3, device=device), txt_ids=torch.zeros(text_tokens, 3, device=device),
        return_dict=False)


@dataclass
class MemoryPlan:
    """Bytes per GPU of one run, by what holds them; ``peak`` is what must fit."""

    title: str
    rows: dict[str, int] = field(default_factory=dict)
    peak: int = 0
    notes: list[str] = field(default_factory=list)

    def fits(self, gb: float) -> bool:
        """Whether the peak fits a GPU of `gb` GB (with ~0.5 GB of CUDA context and 5 % for fragmentation)."""
        return self.peak * 1.05 + 0.5 * GB <= gb * GB

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers in GB, for JSON."""
        return {"title": self.title, "gb": {k: round(v / GB, 3) for k, v in self.rows.items()},
                "peak_gb": round(self.peak / GB, 3), "fits": {f"{g} GB": self.fits(g) for g in (24, 48, 80)},
                "notes": self.notes}

    def table(self) -> str:
        """The plan as aligned text lines."""
        width = max(len(k) for k in [*self.rows, "peak per GPU"])
        lines = [self.title] + [f"  {k:<{width}}  {v / GB:9.3f} GB" for k, v in self.rows.items()]
        lines.append(f"  {'peak per GPU':<{width}}  {self.peak / GB:9.3f} GB")
        lines.append("  fits: " + ", ".join(f"{g} GB {'yes' if self.fits(g) else 'no'}" for g in (24, 48, 80)))
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def inference_peak(module: torch.nn.Module, run: Any) -> int:
    """Bytes of `module`'s weights plus the peak of ``run()`` (a no-grad forward on meta inputs) beyond them."""
    mode = LiveBytes()
    with torch.no_grad(), fused_attention(), mode:
        for t in [*module.parameters(), *module.buffers()]:
            mode.add(t)
        run()
    return mode.peak


def plan_generation(model: str, image_tokens: int, text_tokens: int, dtype: torch.dtype, batch: int = 1,
                    cpu_offload: bool = False, known_tokens: int = 0, vae_pixels: tuple[int, int] = (1024, 1024),
                    clip_tokens: int = 77, regional: bool = False) -> MemoryPlan:
    """The GPU memory of one generation: each component's weights and the peak of its forward.

    `image_tokens` / `text_tokens`: the transformer's sequence (``batch`` of them: 2 with true CFG);
    `known_tokens`: condition tokens whose per-layer keys/values are cached (known frames, concat mode);
    `vae_pixels`: the decoded grid ``(height, width)``; `regional`: a float32 ``(seq, seq)`` attention mask
    (CookAnything's step-wise mask). With `cpu_offload` one component is on the GPU at a time
    (``enable_model_cpu_offload``), else all of them stay there.
    """
    extra: dict[str, int] = {}
    from procseq.quiet import quiet_loading

    configs = component_configs(model)
    peaks, weights = {}, {}
    for name in ("text_encoder", "text_encoder_2", "transformer", "vae"):
        with quiet_loading():
            m = meta_component(name, configs[name], dtype)
        weights[name] = tensor_bytes([*m.parameters(), *m.buffers()])
        if name == "transformer":
            kwargs = transformer_inputs(m, batch, image_tokens + known_tokens, text_tokens)
            peaks[name] = inference_peak(m, lambda: m(**kwargs))
            c = m.config
            if known_tokens:  # every block's keys and values of the condition tokens, kept for all steps
                extra["known-frame K/V cache"] = ((c.num_layers + c.num_single_layers) * 2 * known_tokens * batch
                                                  * c.num_attention_heads * c.attention_head_dim * weights[name]
                                                  // max(1, sum(p.numel() for p in m.parameters())))
            if regional:
                extra["regional attention mask"] = (image_tokens + known_tokens + text_tokens) ** 2 * 4
            peaks[name] += sum(extra.values())
        elif name == "vae":
            c = m.config.latent_channels
            z = torch.randn(1, c, vae_pixels[0] // 8, vae_pixels[1] // 8, device="meta", dtype=dtype)
            peaks[name] = inference_peak(m, lambda: m.decode(z))
        else:
            length = min(clip_tokens, m.config.max_position_embeddings) if name == "text_encoder" else text_tokens
            ids = torch.zeros(1, length, dtype=torch.long, device="meta")
            peaks[name] = inference_peak(m, lambda: m(ids))
    plan = MemoryPlan(f"generation memory plan: {model}, {str(dtype).replace('torch.', '')}, "
                      f"{image_tokens} image + {text_tokens} text tokens x {batch}"
                      + (f", {known_tokens} known-frame tokens" if known_tokens else "")
                      + (", model CPU offload" if cpu_offload else ""))
    for name in weights:
        plan.rows[f"weights: {name}"] = weights[name]
    work = {name: peaks[name] - weights[name] for name in peaks}
    largest = max(work, key=lambda n: work[n])
    if largest == "transformer":
        plan.rows.update(extra)
    else:
        plan.notes.append(", ".join(f"{k}: {v / GB:.3f} GB" for k, v in extra.items()) + " (during the transformer)")
    plan.rows[f"activations (largest forward: {largest})"] = work[largest] - (
        sum(extra.values()) if largest == "transformer" else 0)
    if cpu_offload:
        plan.peak = max(peaks.values())
        plan.notes.append("offload: one component on the GPU at a time; the rest in CPU memory "
                          f"({sum(weights.values()) / GB:.1f} GB of RAM)")
    else:
        plan.peak = sum(weights.values()) + max(work.values())
    plan.notes.append("CUDA context (~0.5 GB) and allocator fragmentation (~5 %) not included")
    return plan


def plan_sequence(model: str, frames: int, frame_size: int | None = None, mode: str = "grid", known: int = 0,
                  dtype: str = "bfloat16", cpu_offload: bool = False, cfg_batch: int = 1, history: int = 2) -> MemoryPlan:
    """:func:`plan_generation` for one sequence as ``procseq generate`` makes it: `frames` frames of `frame_size`
    px (default: the model's) in layout `mode` (``grid`` and ``regional``: one grid; ``frame-by-frame``: one frame
    with `history` earlier frames as known tokens), `known` known frames, `cfg_batch` 2 with true CFG."""
    from procseq.layout import GridLayout
    from procseq.models.loading import ModelDefaults, resolve_model

    if model not in KNOWN_CONFIGS:
        location = Path(resolve_model(model))
        frame_size = frame_size or ModelDefaults.from_folder(location if location.is_dir() else None).frame_size_for(frames)
    frame_size = frame_size or ModelDefaults().frame_size_for(frames)
    per_frame = (frame_size // 16) ** 2
    layout = GridLayout.for_frames(frames)
    if mode == "frame-by-frame":
        image, known_tokens, pixels = per_frame, (history + known) * per_frame, (frame_size, frame_size)
    else:
        image, known_tokens = layout.rows * layout.cols * per_frame, known * per_frame
        pixels = (layout.rows * frame_size, layout.cols * frame_size)
    torch_dtype = getattr(torch, "bfloat16" if dtype == "auto" else dtype)
    plan = plan_generation(model, image, text_tokens(model), torch_dtype, cfg_batch, cpu_offload, known_tokens, pixels,
                           regional=mode == "regional")
    plan.title = (f"generation memory plan: {model}, {frames} frames x {frame_size} px, {mode}"
                  + (f", {known} known frames" if known else "") + f" ({plan.title.split(': ', 1)[1].split(', ', 1)[1]})")
    return plan
