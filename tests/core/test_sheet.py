"""The readable outputs: sequence.png in reading order with captions below the frames; --frame-scale round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from procseq.layout import frames_to_grid
from procseq.sequence import Sequence
from procseq.sheet import auto_scale, check_scale, enlarge, sequence_sheet, wrap, font, write_sequence_folder

COLOURS = [(200, 30, 30), (30, 160, 30), (30, 30, 200), (220, 200, 20), (150, 30, 150), (20, 160, 170), (250, 120, 0)]


def frames(n: int, side: int = 8) -> list[Image.Image]:
    out = []
    for i in range(n):
        im = Image.new("RGB", (side, side), COLOURS[i % len(COLOURS)])
        im.putpixel((0, 0), (0, 0, 0))  # a corner mark: nearest enlargement keeps it a sharp block
        out.append(im)
    return out


def cell_colours(sheet: Image.Image, n: int, side: int) -> list[tuple[int, int, int]]:
    """The colour at the centre of each frame found on the sheet, in the order they are found (rows, then columns)."""
    arr = np.asarray(sheet)
    found, seen = [], set()
    for y in range(arr.shape[0]):
        for x in range(arr.shape[1]):
            c = tuple(int(v) for v in arr[y, x])
            if c in map(tuple, COLOURS) and (y // side, c) not in seen and c not in [f[0] for f in found]:
                found.append((c, y, x))
                seen.add((y // side, c))
    return [c for c, _, _ in sorted(found, key=lambda f: (f[1] // side, f[2]))][:n]


def test_sheet_is_in_reading_order_enlarged_with_captions_below() -> None:
    fr = frames(7)
    caps = [f"step number {i} of the making" for i in range(7)]
    sheet = sequence_sheet(fr, caps, "a test", scale=4, columns=3)
    assert sheet.mode == "RGB"
    # reading order: frame k is the k-th coloured block, left to right then top to bottom (not serpentine)
    assert cell_colours(sheet, 7, 32) == COLOURS[:7]
    arr = np.asarray(sheet)
    # each frame is intact and enlarged 4x: its colour fills a 32x32 block except the 4x4 black corner mark
    ys, xs = np.where((arr == COLOURS[4]).all(-1))
    y0, x0 = ys.min(), xs.min()  # the frame's top-left corner
    block = arr[y0:y0 + 32, x0:x0 + 32]
    assert (block[:4, :4] == 0).all() and (block[4:, :] == COLOURS[4]).all() and (block[:, 4:] == COLOURS[4]).all()
    below = arr[y0 + 32:y0 + 32 + 40, x0 - 80:x0 + 112]  # the caption under the frame: dark ink on paper
    assert (below.max(-1) < 100).sum() > 30


def test_grid_stays_serpentine_and_the_sheet_differs() -> None:
    fr = frames(4)
    grid = np.asarray(frames_to_grid(fr))
    assert tuple(grid[12, 4]) == COLOURS[3] and tuple(grid[12, 12]) == COLOURS[2]  # row 2 runs right to left
    assert cell_colours(sequence_sheet(fr, ["a", "b", "c", "d"], scale=2), 4, 16) == COLOURS[:4]


def test_wrap_fits_and_ellipsis() -> None:
    face = font(14)
    lines = wrap("place the red two by four brick on the grey baseplate at the far left corner " * 3, face, 120, 3)
    assert len(lines) == 3 and lines[-1].endswith("...") and all(face.getlength(line) <= 120 for line in lines)
    assert wrap("x" * 200, face, 50, 10)[0] and all(face.getlength(line) <= 50 for line in wrap("x" * 200, face, 50, 10))


def test_scales() -> None:
    assert auto_scale(32) == 4 and auto_scale(352) == 1 and auto_scale(1) == 16
    assert enlarge(Image.new("RGB", (3, 2)), 5).size == (15, 10)
    for bad in (0, 17, 2.5, True):
        with pytest.raises(ValueError, match="whole number from 1 to 16"):
            check_scale(bad)
    with pytest.raises(ValueError, match="one caption per frame"):
        sequence_sheet(frames(2), ["only one"])


def test_folder_with_frame_scale_loads_back_exactly(tmp_path) -> None:
    seq = Sequence(frames(5), [f"step {i}" for i in range(5)], "a thing", "lego", {"seed": 3})
    out = write_sequence_folder(seq, tmp_path / "s", extra={"model": "m"}, frame_scale=3)
    names = {p.name for p in out.iterdir()}
    assert {"frame_00.png", "frame_04.png", "grid.png", "sequence.gif", "sequence.json", "sequence.png"} <= names
    assert Image.open(out / "frame_00.png").size == (24, 24) and Image.open(out / "grid.png").size == (24, 16)  # 3x2 frames of 8 px: not enlarged
    assert Image.open(out / "sequence.gif").size == (24, 24)
    assert json.loads((out / "sequence.json").read_text())["frame_scale"] == 3
    back = Sequence.load(out)
    assert [f.tobytes() for f in back.frames] == [f.tobytes() for f in seq.frames]
    assert "frame_scale" not in back.meta and back.meta["model"] == "m"
    plain = write_sequence_folder(back, tmp_path / "plain")  # re-saved at scale 1: no stale frame_scale
    assert "frame_scale" not in json.loads((plain / "sequence.json").read_text())
    assert Image.open(plain / "frame_00.png").size == (8, 8)


def test_generate_frame_scale_on_the_command_line(tiny_model_dir, tmp_path) -> None:
    from click.testing import CliRunner

    from procseq.cli import main

    out = tmp_path / "seq"
    res = CliRunner().invoke(main, ["generate", "a red circle", "--frames", "4", "--steps", "1", "--frame-scale", "2",
                                    "--model", str(tiny_model_dir), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    side = Image.open(out / "grid.png").size[0] // 2
    assert Image.open(out / "frame_00.png").size == (2 * side, 2 * side)
    sheet = Image.open(out / "sequence.png")
    assert sheet.size[0] > 2 * Image.open(out / "grid.png").size[0]
    assert Sequence.load(out).frames[0].size == (side, side)
    bad = CliRunner().invoke(main, ["generate", "x", "--frame-scale", "0", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--frame-scale" in bad.output
