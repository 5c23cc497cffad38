"""A stand-in pipeline for batch-generation tests: instant, deterministic, logs what it generated."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from procseq.pipelines.output import SequenceOutput


class FakePipeline:
    """Called like ProcessPipeline; frames are flat colours from the seed; refuses domain "nope";
    appends each prompt to `log` (one line per generation) when given."""

    def __init__(self, log: Path | None = None):
        self.log = log

    def __call__(self, prompt: str, domain: str, frames: int, generator: torch.Generator, **kwargs) -> SequenceOutput:
        if domain == "nope":
            raise ValueError("Unknown domain 'nope'.")
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(prompt + "\n")
        shade = int(torch.randint(256, (1,), generator=generator))
        imgs = [Image.new("RGB", (8, 8), (shade, i * 10, 0)) for i in range(frames)]
        return SequenceOutput(frames=[imgs], captions=[[f"step {i}" for i in range(frames)]],
                              images=[Image.new("RGB", (16, 16))], metadata=[{"timings_s": {"total": 0.0}}])
