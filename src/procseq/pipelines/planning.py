"""Instruction -> step plan (one caption per frame).

The offline default is a template per domain: the domain's process stages, stretched or merged to
the requested number of steps. A smarter planner (an LLM) plugs in as any ``Planner`` callable.
"""

from __future__ import annotations

from typing import Callable

Planner = Callable[[str, str, int], list[str]]

STAGES: dict[str, tuple[str, ...]] = {
    "painting": ("sketch the outline", "block in flat colour", "add shading", "paint the details"),
    "line_drawing": ("draw the first strokes", "add more strokes", "finish the line work"),
    "lego": ("lay the base bricks", "build up the next layer", "add the top bricks", "finish the model"),
    "cooking": ("prepare the ingredients", "combine them", "cook", "plate the dish"),
    "emoji": ("draw the face shape", "add the features", "add the accessories"),
    "clay": ("form the rough mass", "refine the form", "add surface detail"),
    "sand_art": ("spread the base sand", "draw the shapes in sand", "add the fine lines"),
    "pixel_art": ("place the first pixels", "fill in the colour areas", "add the highlights"),
}
GENERIC_STAGES = ("start", "build up the main form", "refine", "finish")


def template_plan(prompt: str, domain: str, num_steps: int) -> list[str]:
    """`num_steps` captions ``"Step i/N: <stage> (<prompt>)"`` from the domain's stage template."""
    if num_steps < 1:
        raise ValueError(f"A plan needs at least one step, got {num_steps}.")
    stages = STAGES.get(domain, GENERIC_STAGES)
    captions = []
    for i in range(num_steps):
        stage = stages[min(len(stages) - 1, i * len(stages) // num_steps)]
        if i == num_steps - 1:
            stage = stages[-1]
        captions.append(f"Step {i + 1}/{num_steps}: {stage} ({prompt})")
    return captions
