"""Tutorials: the plan's text and the generated frames interleaved, as Markdown and as one self-contained HTML page.

A tutorial folder holds ``tutorial.md`` (title, then per step a heading, the caption and the frame, linked as
``frame_XX.png``), ``tutorial.html`` (the same, every image embedded as a ``data:`` URI, so the page opens
anywhere on its own), the frames, ``grid.png``, ``sequence.gif`` and ``sequence.json`` (what
``procseq generate`` writes, plus the plan). The sequence comes from any layout (``grid``,
``regional``, ``frame-by-frame``) or, from a picture of the finished thing, from ReCraft (:func:`generate_tutorial`).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from procseq.images import image_data_url
from procseq.planning import Plan, resample_captions

if TYPE_CHECKING:  # diffusers loads only when a pipeline does
    from procseq.pipelines.output import SequenceOutput

PAGE_STYLE = ("body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222}"
              "img{width:16rem;image-rendering:pixelated;border:1px solid #ccc}"
              "section{margin:1.5rem 0}.meta{color:#666;font-size:.9rem}")


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~])")
_LINE_START = re.compile(r"^(\d*)([-+=.)])")  # a list item, rule or setext underline where the line starts


def markdown_text(text: str) -> str:
    """`text` as inert Markdown on one line: whitespace runs (newlines included) become one space, control
    characters are dropped, ``& < >`` become HTML entities (no raw HTML), and every Markdown punctuation mark is
    backslash-escaped (no links, images, headings, emphasis or ``javascript:`` targets)."""
    text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    text = " ".join(text.split())
    return _LINE_START.sub(r"\1\\\2", _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)))


def best_layout(num_steps: int, max_frames: int) -> str:
    """The layout BENCHMARKS measures best for `num_steps`: the grid whenever the sequence fits the model's grid
    (procseq-tiny v2 at 4, 9, 12 and 16 steps: step accuracy 0.90-1.00 against 0.11-0.58 frame by frame and
    0.09-0.38 regional; BENCHMARKS "procseq-tiny v2"), else frame by frame (past the v1 grid it beat regional,
    0.13-0.15 against 0.00-0.03 at 12-16 steps; "Frame by frame (issue 14)"). The one place the tutorial and the app choose
    their default layout."""
    return "grid" if num_steps <= max_frames else "frame-by-frame"


def render_markdown(title: str, captions: list[str], image_names: list[str], note: str = "") -> str:
    """The tutorial as Markdown: ``# title``, then ``## Step i`` with the caption and ``![...](image)`` per step.

    Title, note and captions come from prompts, plans edited by hand or an endpoint's answer, so each is written
    as inert text on one line (:func:`markdown_text`); only the image names (procseq's own) are links.
    """
    if len(captions) != len(image_names):
        raise ValueError(f"{len(captions)} captions for {len(image_names)} images; give one image per step.")
    lines = [f"# {markdown_text(title) or 'Tutorial'}", ""] + ([markdown_text(note), ""] if note else [])
    for i, (caption, name) in enumerate(zip(captions, image_names), 1):
        text = markdown_text(caption) or "(no caption)"
        lines += [f"## Step {i} of {len(captions)}", "", text, "", f"![Step {i}: {text}]({name})", ""]
    return "\n".join(lines)


def render_html(title: str, captions: list[str], frames: list[Image.Image], note: str = "") -> str:
    """The tutorial as one HTML page with every frame embedded as a PNG ``data:`` URI (text escaped)."""
    if len(captions) != len(frames):
        raise ValueError(f"{len(captions)} captions for {len(frames)} frames; give one frame per step.")
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{esc(title)}</title>",
             f"<style>{PAGE_STYLE}</style>", "</head>", "<body>", f"<h1>{esc(title)}</h1>"]
    if note:
        parts.append(f'<p class="meta">{esc(note)}</p>')
    for i, (caption, frame) in enumerate(zip(captions, frames), 1):
        parts += ["<section>", f"<h2>Step {i} of {len(captions)}</h2>", f"<p>{esc(caption)}</p>",
                  f'<img src="{image_data_url(frame)}" alt="{esc(f"Step {i}: {caption}")}">', "</section>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_tutorial(output: SequenceOutput, out: str | Path, plan: Plan | None = None,
                   extra: dict[str, Any] | None = None, gif_ms: int = 600, frame_scale: int = 1) -> Path:
    """Write the first sequence of `output` as a tutorial folder into `out` (see the module docstring).

    `plan` gives the title (default: the output's own plan); `extra` goes into ``sequence.json``; `frame_scale`
    enlarges the written frames (:func:`procseq.sheet.write_sequence_folder`).
    """
    from procseq.batch import save_sequence_folder

    plan = plan or (output.plans[0] if output.plans else None)
    if plan is None:
        raise ValueError("A tutorial needs the plan (title and captions) the sequence was made from.")
    frames, captions = output.frames[0], output.captions[0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = output.metadata[0] if output.metadata else {}
    note = f"{plan.domain.replace('_', ' ')}, {len(frames)} steps, {meta.get('mode', 'grid')} mode (procseq)"
    save_sequence_folder(output, plan.title, plan.domain, out, {"plan": plan.to_dict(), **(extra or {})}, gif_ms,
                         frame_scale)
    names = [f"frame_{i:02d}.png" for i in range(len(frames))]
    (out / "tutorial.md").write_text(render_markdown(plan.title, captions, names, note), encoding="utf-8")
    (out / "tutorial.html").write_text(render_html(plan.title, captions, frames, note), encoding="utf-8")
    return out


def generate_tutorial(pipe: Any, plan: Plan, mode: str = "grid", image: Any = None, **kwargs: Any) -> SequenceOutput:
    """The sequence of a tutorial from its plan: ``pipe(plan=plan, mode=mode)``, or from `image` (the finished thing):
    ReCraft (grid mode; more steps than one grid holds are predicted backwards with ``extend``) or, in the regional
    and frame-by-frame modes, the picture as the known last frame. The captions are the plan's either way. `kwargs` go to the pipeline.
    """
    if image is None:
        return pipe(plan=plan, mode=mode, **kwargs)
    n = plan.num_steps
    if mode != "grid":  # regional, frame-by-frame: the picture is the known last frame
        return pipe(plan=plan, mode=mode, known={n - 1: image}, **kwargs)
    from procseq.pipelines.image_to_sequence import ImageToSequencePipeline

    recraft = pipe if isinstance(pipe, ImageToSequencePipeline) else ImageToSequencePipeline.from_process_pipeline(pipe)
    frames = min(n, recraft.defaults.max_frames)
    kwargs.pop("true_cfg_scale", None)
    out = recraft(image, domain=plan.domain, frames=frames, prompt=plan.title, extend=n - frames,
                  planner=lambda _p, _d, k: resample_captions(plan.captions, k), **kwargs)
    out.plans = [plan]
    out.metadata[0]["mode"] = "recraft"
    return out


__all__ = ["best_layout", "generate_tutorial", "markdown_text", "render_html", "render_markdown", "write_tutorial"]
