"""Load images, and the central frame of videos, as RGB PIL images for AudioCLIP's image tower."""

from __future__ import annotations

import os
import struct
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from xsearch.media.audio import media_error
from xsearch.media.kinds import kind_of

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


def video_central_frame(path: str | os.PathLike[str]) -> tuple[Image.Image, float]:
    """Return the frame shown at half the video's duration, as RGB, and its time in seconds.

    The time counts from the start of the video stream. The frame is the one on screen at the
    midpoint (the last frame whose timestamp is not after it), which for n equally spaced
    frames is frame n // 2. The stream's duration is used, else the container's; when neither
    is known, the frames are counted and frame n // 2 is taken. The display rotation stored
    by phones is applied. Raises MediaError (one line, naming the file) on failure.
    """
    name = os.fspath(path)
    try:
        container = av.open(name)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise media_error(name, "cannot open", exc) from exc
    with container:
        if not container.streams.video:
            raise media_error(name, "no video track")
        stream = container.streams.video[0]
        try:
            span = _span(container, stream)
            if span is None:
                found = _middle_by_count(container, stream, name)
            else:
                start, duration = span
                found = _frame_at(container, stream, start + duration / 2, start, name)
            if found is None:
                raise media_error(name, "video track is empty")
            frame, seconds = found
            image = frame.to_image()
            rotation = frame.rotation
        except (av.FFmpegError, ValueError) as exc:
            raise media_error(name, "cannot decode video", exc) from exc
        if span is not None and seconds is not None:
            seconds -= span[0]
    if rotation:
        # `rotation` is counterclockwise degrees, as PIL's rotate() takes them.
        image = image.rotate(rotation, expand=True)
    return image, float(seconds) if seconds is not None else 0.0


def _span(container, stream) -> tuple[Fraction, Fraction] | None:
    """(start, duration) of the video stream in seconds, or None when the file does not say."""
    if stream.duration and stream.time_base:
        start = Fraction(stream.start_time or 0) * stream.time_base
        return start, Fraction(stream.duration) * stream.time_base
    if container.duration:
        return Fraction(container.start_time or 0, av.time_base), Fraction(
            container.duration, av.time_base
        )
    return None


def _frame_time(frame, stream) -> Fraction | None:
    if frame.pts is None:
        return None
    return Fraction(frame.pts) * (frame.time_base or stream.time_base)


# Seconds to back off when a seek lands after the target: MPEG-TS seeks, for one, land on the
# first keyframe *after* the requested time even when asked to go backward.
_SEEK_BACKOFF = (0, 2, 8, 32, 128, 512)


def _frame_at(container, stream, target: Fraction, start: Fraction, name: str):
    """(frame, time) of the last frame at or before `target` seconds, else the first after."""
    if stream.time_base:
        for back in _SEEK_BACKOFF:
            if back and target - back <= start:
                break
            # Lands on a keyframe at or before the given time; decoding forward from there
            # reaches the target with the reference frames it needs.
            try:
                container.seek(int((target - back) / stream.time_base), stream=stream)
            except av.FFmpegError:
                break  # unseekable
            chosen, overshot = _decode_to(container, stream, target)
            if chosen is not None and not overshot:
                return chosen
    # No seek got there (or the duration overstated the stream): decode from the very start of
    # a fresh container; in MPEG-TS, seeking to the start time itself overshoots too.
    with av.open(name) as again:
        return _decode_to(again, again.streams.video[0], target)[0]


def _decode_to(container, stream, target: Fraction):
    """Decode on to `target`: ((frame, time) or None, whether the first frame was past it)."""
    chosen = None
    for frame in container.decode(stream):
        time = _frame_time(frame, stream)
        if time is None:
            return (frame, None), False
        if chosen is None and time > target:
            return (frame, time), True
        if time > target:
            break
        chosen = frame, time
        if time == target:
            break
    return chosen, False


def _middle_by_count(container, stream, name: str):
    """Frame n // 2 of a stream of unknown length: count packets, then decode up to it."""
    count = sum(1 for packet in container.demux(stream) if packet.size)
    if count == 0:
        return None
    # Demuxing to the end leaves the container there; a fresh one is simpler than seeking a
    # stream that could not even say how long it is.
    with av.open(name) as again:
        video = again.streams.video[0]
        chosen = None
        for index, frame in enumerate(again.decode(video)):
            chosen = frame, index
            if index >= count // 2:
                break
        if chosen is None:
            return None
        frame, index = chosen
        time = _frame_time(frame, video)
        if time is not None:
            return frame, time - Fraction(video.start_time or 0) * video.time_base
        # A raw elementary stream has no timestamps: go by the frame rate, if it is known.
        rate = video.guessed_rate or video.average_rate
        return frame, (Fraction(index) / rate if rate else None)
