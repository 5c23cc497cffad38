"""CLIP scores for real data, as reported by the papers (optional; never the only evidence).

Loads a CLIP checkpoint from a LOCAL folder (``CLIPModel`` + ``CLIPProcessor`` files, as written
by ``save_pretrained``); nothing is downloaded. Two kinds of score:

- **text-frame CLIP score**: ``100 * max(cos(text embedding, image embedding), 0)`` (the
  torchmetrics / Hessel et al. 2021 convention, without their 2.5 weight), in [0, 100];
- **image-image similarity**: the cosine of CLIP image embeddings, in [-1, 1], between adjacent
  frames (smoothness of the process) or against reference frames (e.g. the ReCraft input image).
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from procseq.sequence import Sequence


@dataclass
class ClipSequenceScore:
    """CLIP scores of one sequence.

    Attributes:
        text_frame: mean CLIP score of caption ``i`` vs frame ``i`` (0-100).
        prompt_final: CLIP score of the prompt vs the final frame (0-100).
        adjacent: mean image-image cosine of frames ``i`` and ``i+1`` (``None`` for one frame).
        reference: mean image-image cosine against the reference (``None`` without one).
    """

    text_frame: float
    prompt_final: float
    adjacent: float | None
    reference: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return asdict(self)


def _features(out: Any) -> torch.Tensor:
    # transformers < 5 returns the projected tensor, >= 5 a ModelOutput with it as pooler_output.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """CLIP text-image and image-image scores from a local checkpoint folder.

    Args:
        path: a folder holding a ``CLIPModel`` and its processor (tokenizer + image processor).
        device: torch device to run on.
        batch_size: images/texts per forward pass.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 32):
        from transformers import CLIPModel, CLIPProcessor

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a local CLIP checkpoint folder (no config.json); pass a folder saved "
                "with CLIPModel.save_pretrained and CLIPProcessor.save_pretrained (nothing is downloaded)."
            )
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        self.batch_size = batch_size
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    @torch.no_grad()
    def embed_texts(self, texts: SequenceABC[str]) -> torch.Tensor:
        """L2-normalised text embeddings, shape `(len(texts), projection_dim)`."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.processor.tokenizer(list(texts[i : i + self.batch_size]), padding=True,
                                             truncation=True, max_length=self.max_length, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out.append(_features(self.model.get_text_features(**batch)).float())
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    @torch.no_grad()
    def embed_images(self, images: SequenceABC[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings, shape `(len(images), projection_dim)`."""
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[i : i + self.batch_size]]
            pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, self.model.dtype)
            out.append(_features(self.model.get_image_features(pixel_values=pixels)).float())
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    def text_image(self, texts: SequenceABC[str], images: SequenceABC[Image.Image]) -> list[float]:
        """CLIP score ``100 * max(cos, 0)`` of each (text, image) pair."""
        if len(texts) != len(images):
            raise ValueError(f"text_image needs one text per image, got {len(texts)} and {len(images)}.")
        cos = (self.embed_texts(texts) * self.embed_images(images)).sum(-1)
        return (100.0 * cos.clamp(min=0)).tolist()

    def image_image(self, a: SequenceABC[Image.Image], b: SequenceABC[Image.Image]) -> list[float]:
        """Cosine similarity of the CLIP embeddings of each (a[i], b[i]) image pair."""
        if len(a) != len(b):
            raise ValueError(f"image_image needs pairs, got {len(a)} and {len(b)} images.")
        emb = self.embed_images(list(a) + list(b))
        return (emb[: len(a)] * emb[len(a) :]).sum(-1).tolist()

    def score_sequence(
        self, sequence: Sequence, reference: Image.Image | SequenceABC[Image.Image] | None = None
    ) -> ClipSequenceScore:
        """All CLIP scores of a sequence.

        Args:
            sequence: frames with one caption each, and a prompt.
            reference: one image (compared with the final frame) or one image per frame
                (compared frame by frame), e.g. a ground-truth sequence.
        """
        frames = list(sequence.frames)
        if not frames:
            raise ValueError("Cannot CLIP-score an empty sequence.")
        img = self.embed_images(frames)
        txt = self.embed_texts(list(sequence.captions) + [sequence.prompt])
        per_frame = 100.0 * (txt[:-1] * img).sum(-1).clamp(min=0)
        prompt_final = 100.0 * float((txt[-1] * img[-1]).sum().clamp(min=0))
        adjacent = float((img[:-1] * img[1:]).sum(-1).mean()) if len(frames) > 1 else None
        ref_score = None
        if reference is not None:
            if isinstance(reference, Image.Image):
                ref_score = float((self.embed_images([reference])[0] * img[-1]).sum())
            else:
                if len(reference) != len(frames):
                    raise ValueError(
                        f"Pass one reference image per frame ({len(frames)}) or a single image; "
                        f"got {len(reference)}."
                    )
                ref_score = float((self.embed_images(list(reference)) * img).sum(-1).mean())
        return ClipSequenceScore(float(per_frame.mean()), prompt_final, adjacent, ref_score)


__all__ = ["ClipScorer", "ClipSequenceScore"]
