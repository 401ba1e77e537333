"""Decode one media file into the items AudioCLIP's towers take: this runs in a worker process.

Only PyAV, NumPy and Pillow are used (never torch), so workers start fast and stay small. The
result is a plain picklable `Decoded` that crosses the process boundary cheaply: images are
already resized and centre-cropped to the model's input size as uint8, and audio is cut into
fixed windows of the 44.1 kHz int16-scale waveform.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import av
import numpy as np
from PIL import Image

from xsearch.errors import MediaError
from xsearch.media import kind_of, load_audio, load_image, video_central_frame
from xsearch.media.audio import media_error

# A tail shorter than this is merged into the window before it rather than embedded on its own.
MIN_TAIL_SECONDS = 1.0


class AudioWindow(NamedTuple):
    """One audio item: seconds [start, end) of the file and its float32 int16-scale waveform.

    A named tuple, so `for start, end, wave in decoded.audio` works too.
    """

    start: float
    end: float
    wave: np.ndarray


@dataclass
class Decoded:
    """What one file decodes to.

    `image` is the uint8 [size, size, 3] RGB input of the image tower (for a video, its central
    frame, shown at `frame_time`); `audio` the windows of its audio track, in order.
    `duration` is the length in seconds of the audio (for a video without audio, of the video);
    None for an image.
    """

    path: str
    kind: str
    duration: float | None = None
    image: np.ndarray | None = None
    frame_time: float | None = None
    audio: list[AudioWindow] = field(default_factory=list)


def decode_file(
    path: str | os.PathLike[str],
    window_seconds: float = 10.0,
    image_size: int = 224,
    sample_rate: int = 44100,
) -> Decoded:
    """Decode `path` by its kind (`kind_of`): image -> one image; audio -> windows; video ->
    the central frame plus the windows of its audio track (none when it has no audio).

    Raises MediaError (one line, naming the file) when the file cannot be used.
    """
    name = os.fspath(path)
    kind = kind_of(name)
    if kind == "image":
        return Decoded(name, kind, image=crop_square(load_image(name), image_size))
    if kind == "audio":
        wave = load_audio(name, sample_rate)
        return Decoded(
            name,
            kind,
            duration=len(wave) / sample_rate,
            audio=cut_windows(wave, sample_rate, window_seconds),
        )
    if kind == "video":
        frame, seconds = video_central_frame(name)
        decoded = Decoded(name, kind, image=crop_square(frame, image_size), frame_time=seconds)
        has_audio, video_seconds = _probe_video(name)
        wave = _video_audio(name, sample_rate) if has_audio else None
        if wave is not None:
            decoded.audio = cut_windows(wave, sample_rate, window_seconds)
            decoded.duration = len(wave) / sample_rate
        else:
            decoded.duration = video_seconds
        return decoded
    raise MediaError(f"{name}: not an audio, image or video file")


def cut_windows(wave: np.ndarray, sample_rate: int, window_seconds: float) -> list[AudioWindow]:
    """Cut `wave` into windows starting at 0, w, 2w, ... seconds (w = `window_seconds`).

    The last window keeps its shorter length when it is at least MIN_TAIL_SECONDS long, else it
    is merged into the window before it (so up to w + 1 s long); a wave no longer than one
    window is one item. The windows are views of `wave`.
    """
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    total = len(wave)
    step = max(1, round(window_seconds * sample_rate))
    bounds = [[start, min(start + step, total)] for start in range(0, total, step)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_TAIL_SECONDS * sample_rate:
        tail = bounds.pop()
        bounds[-1][1] = tail[1]
    return [
        AudioWindow(start / sample_rate, end / sample_rate, wave[start:end])
        for start, end in bounds
    ]


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


def _probe_video(name: str) -> tuple[bool, float | None]:
    """(whether the file has an audio track, the video's length in seconds if it says)."""
    try:
        with av.open(name) as container:
            has_audio = bool(container.streams.audio)
            seconds = None
            video = container.streams.video[0] if container.streams.video else None
            if video is not None and video.duration and video.time_base:
                seconds = float(video.duration * video.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise media_error(name, "cannot open", exc) from exc
    if seconds is not None and not math.isfinite(seconds):
        seconds = None
    return has_audio, seconds


def _video_audio(name: str, sample_rate: int) -> np.ndarray | None:
    """The audio track of a video; None when the track holds no samples (a silent video)."""
    try:
        return load_audio(name, sample_rate)
    except MediaError as exc:
        if str(exc).endswith(": audio track is empty"):
            return None
        raise
