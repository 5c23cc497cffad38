"""The data type every part of procseq passes around: a procedural sequence (frames + captions), saved and
loaded as a folder. What a pipeline returns is :class:`procseq.pipelines.output.SequenceOutput`."""

from __future__ import annotations

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

    def save(self, out_dir: str | Path, extra: dict[str, Any] | None = None, frame_scale: int = 1) -> Path:
        """Write ``frame_XX.png`` files and ``sequence.json`` into `out_dir` (created if needed).

        `frame_scale` > 1 writes the frames enlarged that many times (nearest neighbour) and records it as
        ``frame_scale`` in ``sequence.json``, so :meth:`load` gives back the frames at their own size.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(self.frames):
            if frame_scale > 1:
                frame = frame.resize((frame.width * frame_scale, frame.height * frame_scale), Image.Resampling.NEAREST)
            frame.save(out / f"frame_{i:02d}.png")
        record = {
            "prompt": self.prompt,
            "domain": self.domain,
            "num_frames": self.num_frames,
            "captions": self.captions,
            **self.meta,
            **(extra or {}),
        }
        record.pop("frame_scale", None)
        if frame_scale > 1:
            record["frame_scale"] = frame_scale
        write_json_atomic(out / "sequence.json", record)
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "Sequence":
        """Read a folder written by :meth:`save` (``sequence.json`` + ``frame_XX.png``)."""
        folder = Path(folder)
        meta_path = folder / "sequence.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} has no sequence.json; is it a procseq sequence folder?")
        from procseq.jsonio import read_json

        try:
            record = read_json(meta_path)
        except ValueError as err:  # any shape, any depth: one line naming the file
            raise ValueError(f"{meta_path} is not a valid procseq sequence.json "
                             f"({str(err).replace(str(meta_path), 'the file')})") from None
        try:
            n = int(record.pop("num_frames"))
            if not 1 <= n <= 1024:
                raise ValueError(f"num_frames={n}")
            captions, prompt, domain = list(record.pop("captions")), record.pop("prompt"), record.pop("domain")
            scale = record.pop("frame_scale", 1)
            if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 64:
                raise ValueError(f"frame_scale={scale!r}")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
            raise ValueError(f"{meta_path} is not a valid procseq sequence.json ({type(err).__name__}: {err}).") from err
        frames = []
        for i in range(n):
            path = folder / f"frame_{i:02d}.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing (sequence.json says {n} frames).")
            try:
                with Image.open(path) as im:
                    frame = im.convert("RGB")
            except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError, truncated data
                raise ValueError(f"{path} is not a readable image ({err}).") from err
            if scale > 1:  # written enlarged (``frame_scale``): back to the frame's own size, exactly
                if frame.width % scale or frame.height % scale:
                    raise ValueError(f"{path} is {frame.width}x{frame.height}, not a multiple of the frame_scale "
                                     f"{scale} that {meta_path} records; regenerate the sequence.")
                frame = frame.resize((frame.width // scale, frame.height // scale), Image.Resampling.NEAREST)
            frames.append(frame)
        return cls(frames=frames, captions=captions, prompt=prompt, domain=domain, meta=record)


__all__ = ["MODES", "Sequence"]
