"""procseq: procedural sequences (the step-by-step making of something) on diffusers' FluxTransformer2DModel.

The front door::

    from procseq import ProcessPipeline, load_pipeline
    pipe = ProcessPipeline.from_pretrained("procseq-tiny")      # the embedded model, or any Flux folder
    out = pipe("a LEGO tower of eight bricks", domain="lego", frames=9)
    out.frames[0], out.captions[0], out.images[0]               # frames, step captions, the grid

Names are imported on first use, so ``import procseq`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procseq.lazy import lazy_exports
from procseq.machine import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads: OpenMP threads sleep instead of spinning on a shared machine

__version__ = "0.2.0"

_EXPORTS = {
    "ProcessPipeline": "procseq.pipelines.text_to_sequence",
    "ImageToSequencePipeline": "procseq.pipelines.image_to_sequence",
    "load_recraft_pipeline": "procseq.pipelines.image_to_sequence",
    "load_pipeline": "procseq.pipelines.loading",
    "Plan": "procseq.conditioning.plan",
    "corpus_plan": "procseq.planning",
    "KnownFrames": "procseq.conditioning.frames",
    "SequenceConditioning": "procseq.conditioning.sequence",
    "Sequence": "procseq.sequence",
    "SequenceOutput": "procseq.pipelines.output",
}

if TYPE_CHECKING:
    from procseq.conditioning.frames import KnownFrames
    from procseq.conditioning.sequence import SequenceConditioning
    from procseq.pipelines.loading import load_pipeline
    from procseq.pipelines.image_to_sequence import ImageToSequencePipeline, load_recraft_pipeline
    from procseq.planning import Plan, corpus_plan
    from procseq.pipelines.text_to_sequence import ProcessPipeline
    from procseq.pipelines.output import SequenceOutput
    from procseq.sequence import Sequence


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
