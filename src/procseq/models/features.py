"""Feature extractors for adaptive steps: an image embedding, patch features and a text embedding.

ProcessMaker's adaptive steps compare adjacent frames by three differences (global, local, semantic),
each read from features. The extractor is pluggable (:class:`FeatureExtractor`, a small Protocol):

- :class:`PipelineFeatures` (the default) uses the loaded model's own encoders, so nothing extra is
  needed: the VAE encoder's mid-block features (one patch per latent position; their flattened map is
  the global embedding) and the CLIP text encoder's pooled output for captions;
- :class:`LocalVisionFeatures` reads a CLIP or DINOv2 checkpoint from a **local** folder (transformers,
  nothing downloaded): its pooled image embedding, its patch tokens, and (CLIP) its text embedding.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image


@dataclass
class ImageFeatures:
    """Features of `N` frames.

    Args:
        embeds: one global embedding per frame, `(N, D)`.
        patches: patch features per frame, `(N, P, C)`.
    """

    embeds: torch.Tensor
    patches: torch.Tensor

    def __post_init__(self) -> None:
        if self.embeds.dim() != 2 or self.patches.dim() != 3 or len(self.embeds) != len(self.patches):
            raise ValueError(f"ImageFeatures needs embeds (N, D) and patches (N, P, C), got "
                             f"{tuple(self.embeds.shape)} and {tuple(self.patches.shape)}.")


@runtime_checkable
class FeatureExtractor(Protocol):
    """What adaptive steps read frames and captions through."""

    def image_features(self, frames: SequenceABC[Image.Image]) -> ImageFeatures:
        """Global embeddings `(N, D)` and patch features `(N, P, C)` of `frames`."""
        ...

    def text_features(self, texts: SequenceABC[str]) -> torch.Tensor:
        """One embedding per text, `(N, D)`."""
        ...


def _pixels(frames: SequenceABC[Image.Image], size: int | None = None) -> torch.Tensor:
    """RGB frames -> `(N, 3, H, W)` in [-1, 1] (resized to `size` when given)."""
    arrays = []
    for f in frames:
        im = f.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(im, dtype=np.float32))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


class PipelineFeatures:
    """The default extractor: the pipeline's own VAE encoder (images) and CLIP text encoder (captions).

    Patches are the VAE encoder's mid-block activations, one `C`-vector per latent position; the global
    embedding is that whole map flattened (position-aware, so a part added anywhere moves it).

    Args:
        pipe: a :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` (or any FluxPipeline).
    """

    def __init__(self, pipe: Any):
        self.pipe = pipe

    @torch.no_grad()
    def image_features(self, frames: SequenceABC[Image.Image]) -> ImageFeatures:
        """VAE mid-block features of each frame, encoded alone."""
        vae = self.pipe.vae
        captured: list[torch.Tensor] = []
        hook = vae.encoder.mid_block.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            vae.encode(_pixels(frames).to(vae.device, vae.dtype))
        finally:
            hook.remove()
        mid = captured[-1].float().cpu()  # (N, C, h, w)
        return ImageFeatures(embeds=mid.flatten(1), patches=mid.flatten(2).transpose(1, 2))

    @torch.no_grad()
    def text_features(self, texts: SequenceABC[str]) -> torch.Tensor:
        """The CLIP text encoder's pooled output, as Flux conditions on it."""
        pooled = self.pipe._get_clip_prompt_embeds(prompt=list(texts), device=self.pipe._execution_device)
        return pooled.float().cpu()


class LocalVisionFeatures:
    """CLIP or DINOv2 from a local folder (``save_pretrained`` output); nothing is downloaded.

    Images: the model's pooled embedding (CLIP: ``get_image_features``; DINOv2: the CLS token) and its
    patch tokens (the last hidden state without the CLS token). Texts: CLIP's text embedding, or for a
    vision-only model the `text_fallback` extractor's (the pipeline's CLIP text encoder).

    Args:
        path: the checkpoint folder (``config.json`` + weights + preprocessor files).
        text_fallback: where captions go when the model has no text tower.
        device: torch device.
    """

    def __init__(self, path: str | Path, text_fallback: FeatureExtractor | None = None,
                 device: str | torch.device = "cpu"):
        from transformers import AutoImageProcessor, AutoModel

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a local CLIP/DINOv2 checkpoint folder (no config.json); pass a "
                                    "folder written by save_pretrained (nothing is downloaded).")
        self.device = torch.device(device)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.is_clip = hasattr(self.model, "get_text_features")
        self.tokenizer = None
        if self.is_clip:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        elif text_fallback is None:
            raise ValueError(f"{path} holds a vision-only model; pass text_fallback (e.g. PipelineFeatures(pipe)) "
                             "for the captions' semantic difference.")
        self.text_fallback = text_fallback

    @torch.no_grad()
    def image_features(self, frames: SequenceABC[Image.Image]) -> ImageFeatures:
        """Pooled embeddings and patch tokens."""
        inputs = self.processor(images=[f.convert("RGB") for f in frames], return_tensors="pt").to(self.device)
        if self.is_clip:
            out = self.model.vision_model(**inputs)
            embeds = self.model.visual_projection(out.pooler_output)
        else:
            out = self.model(**inputs)
            embeds = out.pooler_output
        return ImageFeatures(embeds=embeds.float().cpu(), patches=out.last_hidden_state[:, 1:].float().cpu())

    @torch.no_grad()
    def text_features(self, texts: SequenceABC[str]) -> torch.Tensor:
        """CLIP text embeddings (or the fallback's)."""
        if not self.is_clip:
            assert self.text_fallback is not None
            return self.text_fallback.text_features(texts)
        assert self.tokenizer is not None
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        out = self.model.get_text_features(**tokens)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return out.float().cpu()


class CombinedFeatures:
    """ProcessMaker's pairing: the global term from one extractor (CLIP), the local term from another (DINOv2's
    patch tokens), the semantic term from `text` (default: the global one's text features).

    Args:
        global_from, local_from: extractors whose ``embeds`` / ``patches`` are taken.
        text: where captions go (default `global_from`).
    """

    def __init__(self, global_from: FeatureExtractor, local_from: FeatureExtractor, text: FeatureExtractor | None = None):
        self.global_from, self.local_from, self.text = global_from, local_from, text or global_from

    def image_features(self, frames: SequenceABC[Image.Image]) -> ImageFeatures:
        """Global embeddings of one extractor, patch features of the other."""
        return ImageFeatures(embeds=self.global_from.image_features(frames).embeds,
                             patches=self.local_from.image_features(frames).patches)

    def text_features(self, texts: SequenceABC[str]) -> torch.Tensor:
        """The text extractor's embeddings."""
        return self.text.text_features(texts)


def load_feature_extractor(pipe: Any, path: str | Path | None = None, global_path: str | Path | None = None,
                           local_path: str | Path | None = None) -> FeatureExtractor:
    """The extractor adaptive steps use: the pipeline's own encoders, or CLIP/DINOv2 from local `path` (both
    terms), or the global term from `global_path` (e.g. CLIP) and the local term from `local_path` (e.g. DINOv2),
    each falling back to `path` or the pipeline's own. Captions: CLIP's text tower where one is given, else the
    pipeline's CLIP text encoder."""
    own = PipelineFeatures(pipe)
    base = own if path is None else LocalVisionFeatures(path, text_fallback=own)
    if global_path is None and local_path is None:
        return base
    glob = base if global_path is None else LocalVisionFeatures(global_path, text_fallback=own)
    loc = base if local_path is None else LocalVisionFeatures(local_path, text_fallback=own)
    text = next((e for e in (glob, loc, base) if isinstance(e, LocalVisionFeatures) and e.is_clip), own)
    return CombinedFeatures(glob, loc, text)


__all__ = ["CombinedFeatures", "FeatureExtractor", "ImageFeatures", "LocalVisionFeatures", "PipelineFeatures", "load_feature_extractor"]
