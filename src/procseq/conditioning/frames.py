"""Known frames at given cells: one mechanism for ReCraft, continuation, interpolation and history.

ReCraft knows the last cell, continuation the first k, interpolation (ProcessMaker's two-reference
model) cells i-1 and i+1, Loom's history K sparse earlier frames: in every case some frames of the
sequence are given as clean images and the others are generated (DESIGN.md #10). Here they are:

- encoded once, each frame **alone** by the VAE (as a user's picture is), packed into tokens;
- placed with the position ids of their own cells (:func:`procseq.attention.rope.known_position_ids`);
- either (``"concat"``) run in their own t = 0 condition pass whose per-layer K/V the main pass
  appends (:func:`procseq.attention.processors.run_condition_pass`, the condition LoRA on in that
  pass only), or (``"inplace"``) written over their cells of the noisy latents before every step;
- excluded from the training loss (:meth:`KnownFrames.loss_mask`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from procseq.attention.processors import ConditionKV, run_condition_pass
from procseq.attention.rope import known_position_ids, known_token_indices, known_token_mask
from procseq.layout import GridLayout, pack_latents
from procseq.models.codec import encode_pixels

KnownMode = Literal["concat", "inplace"]
KNOWN_MODES: tuple[str, ...] = ("concat", "inplace")
KnownImage = Image.Image | str | Path


def check_known_indices(indices: Iterable[int], num_frames: int) -> tuple[int, ...]:
    """Validated, sorted frame indices (negative ones count from the end).

    Raises ``ValueError`` for an index outside the sequence, a repeated cell, no cell, or every cell
    (then nothing would be generated).
    """
    raw = list(indices)
    if not raw:
        raise ValueError("No known frames given; pass at least one, e.g. known={0: 'first.png'}.")
    out = []
    for k in raw:
        if isinstance(k, bool) or not isinstance(k, int):
            raise ValueError(f"Known frame index {k!r} is not a whole number; use 0..{num_frames - 1}.")
        if not -num_frames <= k < num_frames:
            raise ValueError(f"Known frame index {k} is outside the sequence of {num_frames} frames; "
                             f"use 0..{num_frames - 1} (or -1 for the last).")
        out.append(k % num_frames)
    if len(set(out)) != len(out):
        raise ValueError(f"Known frame indices {raw} name the same frame twice; give each frame once.")
    if len(out) >= num_frames:
        raise ValueError(f"All {num_frames} frames are known, so there is nothing to generate; "
                         "leave at least one frame out or ask for more frames.")
    return tuple(sorted(out))


@dataclass
class KnownFrames:
    """Clean frames at given cells of a sequence.

    Args:
        indices: the known frame indices, sorted (:func:`check_known_indices`).
        latents: their scaled VAE latents, each frame encoded alone, `(batch, K, C, h, w)`.
        images: the known images at frame size, by index (put back into the output unchanged), if known.
    """

    indices: tuple[int, ...]
    latents: torch.Tensor
    images: dict[int, Image.Image] | None = None

    def __post_init__(self) -> None:
        if self.latents.dim() != 5 or self.latents.shape[1] != len(self.indices):
            raise ValueError(f"Known latents must be (batch, {len(self.indices)}, C, h, w), "
                             f"got {tuple(self.latents.shape)}.")

    @classmethod
    def from_images(cls, vae: Any, images: Mapping[int, KnownImage], num_frames: int, frame_size: int,
                    max_pixels: int | None = None) -> KnownFrames:
        """Load (through the :mod:`procseq.images` policy), resize and encode `images` ``{index: image}``."""
        from procseq.images import MAX_PIXELS, load_image, prepare_image

        indices = check_known_indices(images.keys(), num_frames)
        by_index = {k % num_frames: v for k, v in images.items()}
        prepared: dict[int, Image.Image] = {}
        for k in indices:
            image = by_index[k]
            if isinstance(image, (str, Path)):
                prepared[k] = load_image(image, frame_size, max_pixels or MAX_PIXELS)
            elif isinstance(image, Image.Image):
                prepared[k] = prepare_image(image, frame_size)
            else:
                raise TypeError(f"Known frame {k} must be a PIL image or a file path, got {type(image).__name__}.")
        return cls(indices, encode_frames(vae, [prepared[k] for k in indices]).unsqueeze(0), prepared)

    @property
    def frame_tokens(self) -> int:
        """Tokens per frame side."""
        return self.latents.shape[-1] // 2

    def tokens(self) -> torch.Tensor:
        """Packed clean tokens ``(batch, K * frame_tokens**2, 4C)``, frame by frame in :attr:`indices` order."""
        b, k, c, h, w = self.latents.shape
        return pack_latents(self.latents.reshape(b * k, c, h, w)).reshape(b, -1, 4 * c)

    def position_ids(self, layout: GridLayout) -> torch.Tensor:
        """Their cells' position ids ``(K * frame_tokens**2, 3)``."""
        return known_position_ids(layout, self.frame_tokens, self.indices)

    def token_index(self, layout: GridLayout) -> torch.Tensor:
        """Indices of their cells' tokens in the packed grid ``(K * frame_tokens**2,)``, aligned with :meth:`tokens`."""
        return known_token_indices(layout, self.frame_tokens, self.indices)

    def loss_mask(self, layout: GridLayout) -> torch.Tensor:
        """Boolean ``(seq,)``: true on the tokens to generate (the unknown cells), where the loss applies."""
        return ~known_token_mask(layout, self.frame_tokens, self.indices)

    def condition(self, transformer: Any, layout: GridLayout, pooled: torch.Tensor,
                  guidance: torch.Tensor | None = None, lora: bool = True) -> ConditionKV:
        """The t = 0 condition pass over the known tokens at their cells; the K/V for the main pass."""
        tokens = self.tokens().to(pooled.device, pooled.dtype)
        ids = self.position_ids(layout).to(tokens)
        return run_condition_pass(transformer, tokens, ids, pooled, guidance, lora=lora)

    def overwrite(self, latents: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        """In-place mode: `latents` ``(B, seq, 4C)`` with the known cells replaced by their clean tokens."""
        out = latents.clone()
        tokens = self.tokens().to(latents)
        out[:, self.token_index(layout).to(latents.device)] = tokens.expand(latents.shape[0], -1, -1) \
            if tokens.shape[0] == 1 else tokens
        return out

    def paste(self, frames: list[Image.Image]) -> list[Image.Image]:
        """`frames` with the known images put back at their indices (when the images are known)."""
        if self.images is None:
            return frames
        return [self.images[k].copy() if k in self.images else f for k, f in enumerate(frames)]


@torch.no_grad()
def encode_frames(vae: Any, frames: list[Image.Image]) -> torch.Tensor:
    """RGB frames of equal size -> their scaled latents ``(K, C, h, w)``, each encoded alone."""
    import numpy as np

    pixels = torch.stack([torch.from_numpy(np.asarray(f.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
                          for f in frames]) / 127.5 - 1.0
    return encode_pixels(vae, pixels)


__all__ = ["KNOWN_MODES", "KnownFrames", "KnownMode", "check_known_indices", "encode_frames"]
