"""User images in: validate, decode and normalise a picture of a finished artifact (ReCraft input).

Policy (as in MakeAnything's ReCraft):

- formats: PNG, JPEG, WebP (anything else is refused, even when Pillow could read it);
- the pixel count is checked from the header **before** decoding, against `max_pixels`
  (default :data:`MAX_PIXELS`, 50 megapixels), which also guards against decompression bombs;
- EXIF orientation is applied (``ImageOps.exif_transpose``);
- alpha (RGBA, LA, palette transparency) is composited on white; grayscale, palette and 16-bit
  (``I;16``, ``I``) images become 8-bit RGB (16-bit values are scaled by 1/257);
- any size and aspect ratio: the image is padded to a square with white (centred), then resized
  (Lanczos) to the model's frame size.

Every failure is a ``ValueError`` (``FileNotFoundError`` for a missing file) whose message says what
to do, raised before anything is written.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000
"""Largest accepted input, in pixels (width * height): 50 megapixels."""

FORMATS = ("PNG", "JPEG", "WEBP")
WHITE = (255, 255, 255)


def open_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read `path` as an 8-bit RGB image with EXIF orientation applied and alpha composited on white.

    Raises:
        FileNotFoundError: `path` does not exist or is not a file.
        ValueError: empty, corrupt, not an image, not PNG/JPEG/WebP, or over `max_pixels` pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}; pass the path of a PNG, JPEG or WebP picture.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); pass a PNG, JPEG or WebP picture.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt = im.format
                if fmt not in FORMATS:
                    raise ValueError(f"{path} is a {fmt} image; convert it to PNG, JPEG or WebP.")
                w, h = im.size
                if w < 1 or h < 1:
                    raise ValueError(f"{path} has no pixels ({w}x{h}); pass a real picture.")
                if w * h > max_pixels:
                    raise ValueError(
                        f"{path} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of "
                        f"{max_pixels / 1e6:g}; downscale it first."
                    )
                im.load()
                image = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{path} is too large to decode safely ({err}); downscale it first.") from err
    except UnidentifiedImageError as err:
        raise ValueError(f"{path} is not a readable image ({err}); pass a PNG, JPEG or WebP picture.") from err
    except (OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"{path} is corrupt or truncated ({err}); re-export it as PNG, JPEG or WebP.") from err
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: alpha composited on white, 16/32-bit integers scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(arr * 255.0 / peak), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square_pad(image: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Pad an RGB image to a square with `fill`, centred (nothing is cropped)."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    out = Image.new("RGB", (side, side), fill)
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


def prepare_image(image: Image.Image, size: int) -> Image.Image:
    """An image (any mode, size, aspect) -> RGB `size` x `size`: white square padding, then Lanczos resize.

    A picture whose long side exceeds ``4 * size`` is first shrunk to that long side (aspect kept), so
    padding never allocates more than ``(4 * size)**2`` pixels (a 49,000,000 x 1 strip would need 7 GB).
    """
    image = to_rgb(image)
    w, h = image.size
    if max(w, h) > 4 * size:
        scale = 4 * size / max(w, h)
        # reducing_gap: a box reduction first (Lanczos alone over a 10^6 x reduction runs out of memory)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS,
                             reducing_gap=3.0)
    square = square_pad(image)
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return square


def load_image(path: str | Path, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """:func:`open_image` then :func:`prepare_image`: the frame-sized RGB picture the pipeline conditions on."""
    return prepare_image(open_image(path, max_pixels), size)


def image_data_url(image: Image.Image) -> str:
    """A PNG ``data:`` URL of `image`, as chat-completions endpoints accept in ``image_url``."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = ["FORMATS", "MAX_PIXELS", "image_data_url", "load_image", "open_image", "prepare_image", "square_pad", "to_rgb"]
