"""The grid layout (MakeAnything): the frames as one serpentine in-context grid, one image to the transformer.

For a model that reads step text (``step_tokens`` in its procseq.json) the text is the prompt followed by every
step caption (each padded to ``step_tokens``), so editing a caption changes the frames; for one trained before
(procseq-tiny v2) the text is the prompt alone, and the grid is exactly what ``diffusers.FluxPipeline`` generates
from that text at the grid's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

from procseq.conditioning.sequence import SequenceConditioning
from procseq.conditioning.text import TextConditioning, join_plan_steps
from procseq.layout import GridLayout, grid_position_ids, grid_to_frames
from procseq.layouts.base import LayoutInputs, TextEncoder, step_captions, step_text_for
from procseq.layouts.one_pass import OnePassLayout


@dataclass(frozen=True)
class GridOptions:
    """The grid layout's settings.

    Args:
        step_text: read the step captions after the prompt (None: where the model was trained with them, i.e. its
            ``step_tokens`` is set and its ``grid_step_text`` is not false; False: the prompt alone; True: the
            captions even for a model without ``step_tokens``, each at its own length).
    """

    step_text: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return asdict(self)


class Grid(OnePassLayout):
    """The serpentine grid (see the module docstring)."""

    name: ClassVar[str] = "grid"
    max_frames: ClassVar[int | None] = None  # the model's max_frames (procseq.json)
    reads_prompt_embeds: ClassVar[bool] = True
    decodes_whole: ClassVar[bool] = True

    def __init__(self, options: GridOptions | None = None) -> None:
        self.options = options or GridOptions()

    def frame_size(self, defaults: Any, frames: int) -> int:
        """The model's frame size for a grid of `frames` cells (MakeAnything's sizes for FLUX.1)."""
        return int(defaults.frame_size_for(frames))

    def reads_steps(self, inputs: LayoutInputs) -> bool:
        """Whether the text carries the step captions."""
        if self.options.step_text is not None:
            return self.options.step_text
        return inputs.step_tokens is not None and inputs.grid_step_text is not False

    def cells(self, frames: int) -> GridLayout:
        """The serpentine grid of `frames` cells (:meth:`procseq.layout.GridLayout.for_frames`)."""
        return GridLayout.for_frames(frames)

    def image_ids(self, frames: int, frame_tokens: int) -> torch.Tensor:
        """``[0, row, col]`` of every token of the grid, as FluxPipeline places an image's tokens."""
        return grid_position_ids(self.cells(frames), frame_tokens)

    def text(self, encoder: TextEncoder, inputs: LayoutInputs, negative: bool = False
             ) -> tuple[TextConditioning, list[tuple[int, int]] | None]:
        """The prompt (``prompt_embeds`` when given), then each plan's step captions when the layout reads them; the
        negative branch reads the negative prompt then empty captions (so both branches batch)."""
        if negative:
            assert inputs.negative_prompts is not None
            prompt = encoder.encode_text(inputs.negative_prompts, inputs.max_sequence_length)
        elif inputs.text is not None:
            prompt = inputs.text
        else:
            prompt = (encoder.encode_text(inputs.prompts, inputs.max_sequence_length) if inputs.prompts_2 is None
                      else encoder.encode_text(inputs.prompts, inputs.max_sequence_length, prompts_2=inputs.prompts_2))
        if not self.reads_steps(inputs):
            return prompt, None
        return join_plan_steps(prompt, [step_text_for(encoder, c, inputs) for c in step_captions(inputs, negative)])

    def decode(self, pipe: Any, latents: torch.Tensor, cond: SequenceConditioning
               ) -> tuple[list[list[Image.Image]], list[Image.Image]]:
        """The whole grid decoded as one image (as FluxPipeline decodes), then cut into frames."""
        height, width = cond.layout.grid_size(cond.frame_size)
        grids = pipe.decode_grid(latents, height, width)
        frames = [grid_to_frames(g, cond.layout.num_frames, cond.layout.rows, cond.layout.cols) for g in grids]
        if cond.known is not None:
            frames = [cond.known.paste(f) for f in frames]
        return frames, grids

    def settings(self, pipe: Any, cond: SequenceConditioning) -> dict[str, Any]:
        """The grid's rows and columns (and whether the text carried the steps)."""
        return {"grid": [cond.layout.rows, cond.layout.cols], **({"step_text": True} if cond.step_spans else {})}


__all__ = ["Grid", "GridOptions"]
