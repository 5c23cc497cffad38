"""ReCraft input policy: formats, modes, EXIF, aspect ratios; every bad file is a ValueError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from procseq.images import MAX_PIXELS, load_image, open_image, prepare_image, to_rgb


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_rgba_is_composited_on_white(tmp_path) -> None:
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:4, :, :] = (255, 0, 0, 255)  # opaque red top, fully transparent bottom
    img = open_image(save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    out = np.asarray(img)
    assert img.mode == "RGB" and (out[0, 0] == (255, 0, 0)).all() and (out[7, 7] == (255, 255, 255)).all()


def test_grayscale_palette_and_16_bit(tmp_path) -> None:
    gray = open_image(save(Image.new("L", (6, 6), 100), tmp_path / "g.png"))
    assert gray.mode == "RGB" and tuple(np.asarray(gray)[0, 0]) == (100, 100, 100)
    pal = Image.new("P", (6, 6), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert tuple(np.asarray(open_image(save(pal, tmp_path / "p.png")))[0, 0]) == (10, 200, 30)
    pal.info["transparency"] = 1
    assert tuple(np.asarray(open_image(save(pal, tmp_path / "pt.png", transparency=1)))[0, 0]) == (255, 255, 255)
    sixteen = Image.fromarray(np.full((6, 6), 65535 // 2, np.uint16))
    assert sixteen.mode == "I;16"
    img = open_image(save(sixteen, tmp_path / "s.png"))
    assert img.mode == "RGB" and abs(int(np.asarray(img)[0, 0, 0]) - 127) <= 1
    wide = Image.fromarray(np.full((6, 6), 40000, np.int32))
    assert wide.mode == "I"  # 32-bit integers (what some decoders give for 16-bit data): in memory only
    assert abs(int(np.asarray(to_rgb(wide))[0, 0, 0]) - round(40000 / 257)) <= 1


def test_exif_orientation_is_applied(tmp_path) -> None:
    arr = np.full((4, 8, 3), 255, np.uint8)
    arr[:, :4] = (0, 0, 255)  # blue left half of a landscape image
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = open_image(save(img, tmp_path / "e.jpg", exif=exif, quality=100))
    assert out.size == (4, 8)  # displayed as portrait
    assert np.asarray(out)[0, 0, 2] > 200 and np.asarray(out)[0, 0, 0] < 60  # blue on top after rotation


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_formats_and_aspect_ratio(tmp_path, fmt, suffix) -> None:
    img = Image.new("RGB", (40, 10), (0, 0, 0))
    out = load_image(save(img, tmp_path / f"x.{suffix}", format=fmt), 16)
    arr = np.asarray(out).astype(int)
    assert out.size == (16, 16)
    assert arr[0, 8].min() > 240 and arr[15, 8].min() > 240  # padded with white above and below
    assert arr[8, 8].max() < 40  # the picture in the middle


def test_prepare_keeps_square_images_and_centres_tall_ones() -> None:
    assert prepare_image(Image.new("RGB", (16, 16), (1, 2, 3)), 16).getpixel((5, 5)) == (1, 2, 3)
    tall = np.asarray(prepare_image(Image.new("RGB", (5, 20), (0, 0, 0)), 20))
    assert tall[10, 0].min() == 255 and tall[10, 10].max() == 0


@pytest.mark.parametrize("kind, message", [
    ("missing", "No image file"),
    ("empty", "empty"),
    ("text", "not a readable image"),
    ("truncated", "corrupt"),
    ("bmp", "convert it to PNG"),
    ("huge", "megapixels"),
])
def test_bad_inputs_are_rejected(tmp_path, kind, message) -> None:
    path = tmp_path / f"{kind}.png"
    limit = MAX_PIXELS
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        full = save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)),
                    tmp_path / "full.png")
        path.write_bytes(full.read_bytes()[:200])
    elif kind == "bmp":
        path = save(Image.new("RGB", (4, 4)), tmp_path / "x.bmp")
    elif kind == "huge":
        save(Image.new("RGB", (100, 100)), path)
        limit = 5000
    err = FileNotFoundError if kind == "missing" else ValueError
    with pytest.raises(err, match=message):
        open_image(path, max_pixels=limit)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch) -> None:
    path = save(Image.new("RGB", (20, 20)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # Pillow's own guard, below our limit here
    with pytest.raises(ValueError, match="too large to decode"):
        open_image(path, max_pixels=10**9)
