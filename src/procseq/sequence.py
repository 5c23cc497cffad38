"""The data types every part of procseq passes around: a procedural sequence and a pipeline output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from procseq.outputs import write_json_atomic

MODES = ("grid", "regional", "frame-by-frame")
"""The three layouts (DESIGN decision 12), each a strategy returning the same :class:`SequenceOutput`."""


@dataclass
class Sequence:
    """A procedural sequence: ordered frames of the making of one artifact, one caption per frame.

    Args:
        frames: `num_frames` RGB images of equal size, first step first.
        captions: one caption per frame (`len(captions) == len(frames)`).
        prompt: the text that describes the finished artifact.
        domain: the domain name (``"lego"``, ``"painting"``...), always explicit.
        meta: free-form metadata (seed, spec, settings...); must be JSON-serialisable.
    """

    frames: list[Image.Image]
    captions: list[str]
    prompt: str
    domain: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.captions):
            raise ValueError(
                f"A sequence needs one caption per frame, got {len(self.frames)} frames and "
                f"{len(self.captions)} captions."
            )

    @property
    def num_frames(self) -> int:
        """Number of frames (steps) in the sequence."""
        return len(self.frames)

    def save(self, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``frame_XX.png`` files and ``sequence.json`` into `out_dir` (created if needed)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(self.frames):
            frame.save(out / f"frame_{i:02d}.png")
        record = {
            "prompt": self.prompt,
            "domain": self.domain,
            "num_frames": self.num_frames,
            "captions": self.captions,
            **self.meta,
            **(extra or {}),
        }
        write_json_atomic(out / "sequence.json", record)
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "Sequence":
        """Read a folder written by :meth:`save` (``sequence.json`` + ``frame_XX.png``)."""
        folder = Path(folder)
        meta_path = folder / "sequence.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} has no sequence.json; is it a procseq sequence folder?")
        try:
            record = json.loads(meta_path.read_text())
            n = int(record.pop("num_frames"))
            if not 1 <= n <= 1024:
                raise ValueError(f"num_frames={n}")
            captions, prompt, domain = list(record.pop("captions")), record.pop("prompt"), record.pop("domain")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
            raise ValueError(f"{meta_path} is not a valid procseq sequence.json ({type(err).__name__}: {err}).") from err
        frames = []
        for i in range(n):
            path = folder / f"frame_{i:02d}.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing (sequence.json says {n} frames).")
            try:
                with Image.open(path) as im:
                    frames.append(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError, truncated data
                raise ValueError(f"{path} is not a readable image ({err}).") from err
        return cls(frames=frames, captions=captions, prompt=prompt, domain=domain, meta=record)


@dataclass
class SequenceOutput:
    """What the pipelines return, one entry per prompt in the batch.

    Args:
        frames: per prompt, the list of frames in process order.
        captions: per prompt, the list of per-step captions.
        grid: per prompt, the serpentine grid image the frames were cut from (also :attr:`images`).
        metadata: per prompt, settings and timings (JSON-serialisable).
        plans: per prompt, the :class:`~procseq.conditioning.plan.Plan` the frames were made from.
        latents: the final packed latents, for ``output_type="latent"``.
    """

    frames: list[list[Any]]
    captions: list[list[str]]
    grid: list[Any]
    metadata: list[dict[str, Any]]
    plans: list[Any] | None = None
    latents: Any = None

    @property
    def images(self) -> Any:
        """The grids, as diffusers outputs name them (PIL list, ``(B, H, W, 3)`` array, or the latents)."""
        return self.latents if self.latents is not None and not self.grid else self.grid

    def as_numpy(self) -> "SequenceOutput":
        """The same output with frames and grids as float32 arrays in [0, 1] (``output_type="np"``)."""
        import numpy as np

        def arr(images: list[Image.Image]) -> np.ndarray:
            return np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])

        return SequenceOutput(frames=[arr(f) for f in self.frames], captions=self.captions, grid=arr(self.grid),
                              metadata=self.metadata, plans=self.plans)

    def sequences(self, prompts: list[str], domain: str) -> list[Sequence]:
        """View the output as :class:`Sequence` objects (one per prompt); metadata goes to ``meta["settings"]``, and
        the words of the prompt the model cannot know (the plan's ``unknown_words``, when recorded) to
        ``meta["unknown_words"]``."""
        plans = self.plans or [None] * len(self.frames)
        return [
            Sequence(frames=f, captions=c, prompt=p, domain=domain,
                     meta={"settings": dict(m), **({"unknown_words": list(plan.meta["unknown_words"])}
                                                   if plan is not None and "unknown_words" in plan.meta else {})})
            for f, c, p, m, plan in zip(self.frames, self.captions, prompts, self.metadata, plans)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Captions and metadata only (images are not JSON)."""
        return {"captions": self.captions, "metadata": self.metadata}


__all__ = ["Sequence", "SequenceOutput"]
