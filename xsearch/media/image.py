"""Load images, and the central frame of videos, as RGB PIL images for AudioCLIP's image tower."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from xsearch.media.audio import media_error
from xsearch.media.kinds import kind_of
from xsearch.media.video import video_central_frame

# Transparent pixels are shown on white, as a browser or viewer would show them; their stored
# colour is arbitrary (often black, which would turn a dark logo into a black square).
_BACKGROUND = (255, 255, 255)

# What Pillow raises on unreadable, truncated or hostile files (plugins differ).
_PIL_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
)


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Return the image in `path` as an RGB PIL image; for a video file, its central frame.

    Videos are recognised by extension (`kinds.kind_of`); anything else is opened with Pillow.
    EXIF orientation is applied, alpha is composited over white, and 16-bit or float greyscale
    is scaled down to 8 bits. Raises MediaError (one line, naming the file) when the file cannot
    be read or has more than `PIL.Image.MAX_IMAGE_PIXELS` pixels (a decompression bomb).
    """
    if kind_of(path) == "video":
        return video_central_frame(path)[0]
    name = os.fspath(path)
    try:
        with Image.open(name) as opened:
            pixels = opened.width * opened.height
            if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
                # Pillow only warns up to twice the limit; refuse before decoding anything.
                raise media_error(
                    name, f"image too large ({opened.width}x{opened.height} pixels), refused"
                )
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return _to_rgb(image)
    except UnidentifiedImageError as exc:
        # Pillow's own message repeats the path.
        raise media_error(name, "cannot read image: not an image format Pillow knows") from exc
    except Image.DecompressionBombError as exc:
        raise media_error(name, "image too large, refused", exc) from exc
    except _PIL_ERRORS as exc:
        raise media_error(name, "cannot read image", exc) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = Image.fromarray(_grey_to_uint8(np.asarray(image)), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _grey_to_uint8(values: np.ndarray) -> np.ndarray:
    # Pillow's own convert() clips these modes at 255 instead of scaling them.
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64))
    peak = values.max(initial=0.0)
    if is_float and peak <= 1.0:
        values = values * 255.0  # float images in [0, 1]
    elif peak > 255:
        values = values / 257.0  # 16-bit range: 65535 -> 255
    return np.clip(values, 0, 255).round().astype(np.uint8)


def crop_square(image: Image.Image, size: int) -> np.ndarray:
    """CLIP's Resize(size, BICUBIC) + CenterCrop(size) of an RGB image, as uint8 [size, size, 3].

    Mirrors torchvision on PIL input exactly: the short side becomes `size` and the long side
    int(size * long / short), resized by Pillow (skipped when the size already matches), then
    the crop starts at int(round((h - size) / 2)); a side shorter than `size` is zero-padded
    as torchvision pads it. Feeding the result to `image_transform(size)` is then a no-op
    resize and crop, so the model sees the same tensor as from the original image.
    """
    image = image.convert("RGB")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    pixels = np.asarray(image)
    pad_h, pad_w = max(0, size - new_h), max(0, size - new_w)
    if pad_h or pad_w:
        pixels = np.pad(
            pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0))
        )
    height, width = pixels.shape[:2]
    # torchvision's int(round(...)): Python's round, halves to even.
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return np.ascontiguousarray(pixels[top : top + size, left : left + size])


def model_input(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [h, w, 3] RGB -> float32 [3, h, w], scaled to [0, 1], less `mean`, over `std`:
    torchvision's ToTensor + Normalize, the same float32 operations in the same order, so the
    result is the same to the bit."""
    scaled = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
    shape = (3, 1, 1)
    mean32, std32 = (np.asarray(v, dtype=np.float32).reshape(shape) for v in (mean, std))
    return (scaled - mean32) / std32
