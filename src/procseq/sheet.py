"""Readable pictures of a sequence, and the one folder writer every command uses.

``grid.png`` is the model's serpentine grid, kept exact (what diffusers' grid pipelines write). For people,
:func:`sequence_sheet` draws ``sequence.png``: the frames enlarged by a whole factor (nearest neighbour, so
a 32-px frame stays sharp) in **reading order** (left to right, top to bottom), each with its step number
and caption *below* it (never over it), and the prompt as a title. :func:`write_sequence_folder` writes
``frame_XX.png``, ``grid.png``, ``sequence.gif``, ``sequence.json`` and ``sequence.png``; ``frame_scale``
enlarges the written frames and GIF (``sequence.json`` records it, and :meth:`Sequence.load` undoes it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from procseq.sequence import Sequence

MIN_CELL = 176
"""Narrowest cell of the sheet in pixels (room for a caption of a few words per line)."""
SHEET_FRAME_SIDE = 128
"""The sheet enlarges frames by the smallest whole factor that makes them at least this wide."""
MAX_SCALE = 16
"""Largest frame scale accepted (``--frame-scale``)."""
INK, LINE, PAPER = (20, 20, 20), (200, 200, 200), (255, 255, 255)


def check_scale(scale: int, option: str = "--frame-scale") -> int:
    """`scale` if it is a whole number in 1..:data:`MAX_SCALE`; ``ValueError`` with the fix otherwise."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"{option} must be a whole number from 1 to {MAX_SCALE}, got {scale!r}.")
    return scale


def enlarge(image: Image.Image, scale: int) -> Image.Image:
    """`image` enlarged `scale` times with nearest neighbour (every pixel becomes a `scale` x `scale` block)."""
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def auto_scale(side: int, target: int = SHEET_FRAME_SIDE) -> int:
    """The smallest whole factor that makes a `side`-pixel frame at least `target` pixels (1 for large frames)."""
    return max(1, min(MAX_SCALE, math.ceil(target / max(1, side))))


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` pixels (its small bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def wrap(text: str, face: Any, width: int, max_lines: int) -> list[str]:
    """`text` broken into at most `max_lines` lines no wider than `width` pixels (the last one ends in '...'
    when text is left over; a word wider than a line is cut)."""
    lines: list[str] = []
    words = " ".join(text.split()).split(" ")
    current = ""
    for word in words:
        trial = f"{current} {word}".strip()
        if face.getlength(trial) <= width or not current:
            current = trial
            while face.getlength(current) > width and len(current) > 1:  # one very long word
                cut = len(current) - 1
                while cut > 1 and face.getlength(current[:cut]) > width:
                    cut -= 1
                lines.append(current[:cut])
                current = current[cut:]
            continue
        lines.append(current)
        current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and face.getlength(last + "...") > width:
            last = last[:-1]
        lines = lines[:max_lines - 1] + [last.rstrip() + "..."]
    return lines


def sequence_sheet(frames: list[Image.Image], captions: list[str], title: str = "", scale: int | None = None,
                   columns: int | None = None, caption_lines: int = 4, text_size: int = 14) -> Image.Image:
    """The sequence as one readable RGB picture: frames enlarged `scale` times (default :func:`auto_scale`) in
    reading order, `columns` per row (default: the most square), each with ``"i. caption"`` below it."""
    if not frames or len(frames) != len(captions):
        raise ValueError(f"A sheet needs one caption per frame, got {len(frames)} frames and {len(captions)} captions.")
    side = frames[0].width
    scale = check_scale(scale, "scale") if scale is not None else auto_scale(side)
    columns = columns or math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    face, title_face = font(text_size), font(text_size + 4)
    pad, line_h = 12, text_size + 4
    frame_w, frame_h = frames[0].width * scale, frames[0].height * scale
    cell_w = max(frame_w, MIN_CELL)
    texts = [wrap(f"{i + 1}. {c}", face, cell_w, caption_lines) for i, c in enumerate(captions)]
    cell_h = frame_h + 6 + line_h * max(len(t) for t in texts)
    title_lines = wrap(title, title_face, columns * (cell_w + pad) - pad, 2) if title else []
    top = pad + (len(title_lines) * (line_h + 4) + pad if title_lines else 0)
    sheet = Image.new("RGB", (pad + columns * (cell_w + pad), top + rows * (cell_h + pad)), PAPER)
    draw = ImageDraw.Draw(sheet)
    for j, line in enumerate(title_lines):
        draw.text((pad, pad + j * (line_h + 4)), line, fill=INK, font=title_face)
    for i, (frame, lines) in enumerate(zip(frames, texts)):
        r, c = divmod(i, columns)
        x, y = pad + c * (cell_w + pad), top + r * (cell_h + pad)
        fx = x + (cell_w - frame_w) // 2
        sheet.paste(enlarge(frame.convert("RGB"), scale), (fx, y))
        draw.rectangle((fx - 1, y - 1, fx + frame_w, y + frame_h), outline=LINE)
        for k, line in enumerate(lines):
            draw.text((x, y + frame_h + 6 + k * line_h), line, fill=INK, font=face)
    return sheet


def data_url(image: Image.Image) -> str:
    """A PNG ``data:`` URL of `image` (for HTML that must stand on its own)."""
    import base64
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sequence_html(frames: list[Image.Image], captions: list[str], title: str = "", scale: int | None = None,
                  columns: int | None = None) -> str:
    """The sheet as an HTML fragment: ``<figure>`` per frame in reading order, the frame enlarged (nearest
    neighbour, pixelated) with ``<figcaption>i. caption</figcaption>`` below it; every string escaped."""
    import html

    if len(frames) != len(captions):
        raise ValueError(f"One caption per frame, got {len(frames)} frames and {len(captions)} captions.")
    scale = scale or (auto_scale(frames[0].width) if frames else 1)
    columns = columns or max(1, math.ceil(math.sqrt(len(frames))))
    side = (frames[0].width * scale) if frames else 0
    cell = max(side, MIN_CELL)
    parts = ['<div class="procseq-sheet">'] + ([f"<h3>{html.escape(title)}</h3>"] if title else [])
    parts.append(f'<div style="display:grid;grid-template-columns:repeat({columns},{cell}px);gap:12px">')
    for i, (frame, caption) in enumerate(zip(frames, captions), 1):
        alt = html.escape(f"Step {i}: {caption}")
        parts.append(f'<figure style="margin:0;width:{cell}px"><img src="{data_url(enlarge(frame, scale))}" '
                     f'alt="{alt}" width="{side}" style="image-rendering:pixelated;border:1px solid #ccc;'
                     f'display:block;margin:0 auto"><figcaption style="font-size:14px;line-height:1.3;'
                     f'margin-top:4px">{i}. {html.escape(caption)}</figcaption></figure>')
    parts.append("</div></div>")
    return "".join(parts)


def write_sequence_folder(seq: Sequence, out: str | Path, grid: Image.Image | None = None,
                          extra: dict[str, Any] | None = None, gif_ms: int = 600, frame_scale: int = 1) -> Path:
    """Write `seq` into `out`: ``frame_XX.png`` and ``sequence.gif`` (enlarged `frame_scale` times),
    ``grid.png`` (`grid`, default the serpentine grid of the frames; never enlarged), ``sequence.json`` (with
    `extra`) and ``sequence.png`` (:func:`sequence_sheet`, at least `frame_scale`). Returns `out`."""
    from procseq.layout import frames_to_grid

    check_scale(frame_scale)
    out = Path(out)
    seq.save(out, extra=extra, frame_scale=frame_scale)
    (grid if grid is not None else frames_to_grid(seq.frames)).save(out / "grid.png")
    shown = [enlarge(f, frame_scale) for f in seq.frames]
    shown[0].save(out / "sequence.gif", save_all=True, append_images=shown[1:], duration=gif_ms, loop=0)
    sheet_scale = max(frame_scale, auto_scale(seq.frames[0].width))
    sequence_sheet(seq.frames, seq.captions, f"{seq.prompt} ({seq.domain.replace('_', ' ')})",
                   sheet_scale).save(out / "sequence.png")
    return out


__all__ = ["auto_scale", "check_scale", "data_url", "enlarge", "sequence_html", "sequence_sheet",
           "write_sequence_folder", "wrap"]
