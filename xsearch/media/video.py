"""Frames of videos as RGB PIL images: the central frame (what ingest embeds by default) and the
frame on screen at a given time (what a result's thumbnail shows). One seeking routine serves
both, so a thumbnail shows the very frame that was embedded. `video_frames` streams every frame
instead, for the frame policies that embed frames over time (`xsearch.media.frames`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from xsearch.media.audio import media_error, open_with_track
from xsearch.media.frames import (
    SCENE_THUMB,
    FramePolicy,
    clip_window,
    stream_clips,
    time_spans,
)

# A video given as a query stands for at most this many frames, shrunk to this many pixels on
# their shorter side (every model here takes 224 or less).
QUERY_FRAMES = 32
QUERY_SIDE = 448

# Seconds to back off when a seek lands after the target: MPEG-TS seeks, for one, land on the
# first keyframe *after* the requested time even when asked to go backward.
_SEEK_BACKOFF = (0, 2, 8, 32, 128, 512)


def video_central_frame(path: str | os.PathLike[str]) -> tuple[Image.Image, float]:
    """Return the frame shown at half the video's duration, as RGB, and its time in seconds.

    The time counts from the start of the video stream. The frame is the one on screen at the
    midpoint (the last frame whose timestamp is not after it), which for n equally spaced
    frames is frame n // 2. The stream's duration is used, else the container's; when neither
    is known, the frames are counted and frame n // 2 is taken. The display rotation stored
    by phones is applied. Raises MediaError (one line, naming the file) on failure.
    """
    return _grab(os.fspath(path), None)


def video_frame(path: str | os.PathLike[str], seconds: float | None) -> Image.Image:
    """The frame on screen `seconds` into the video stream, as RGB (the central frame when
    None): the last frame whose time is not after it, else the first one. Times count as
    `video_central_frame` counts them, so its time gives back its frame. Raises MediaError
    (one line, naming the file) on failure."""
    return _grab(os.fspath(path), seconds)[0]


def video_frames(path: str | os.PathLike[str]) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every frame of the video stream in order, decoded one at a time, with its time in
    seconds counted as `video_central_frame` counts it. Keep what `frame_picture` or
    `grey_thumbnails` make of a frame, not the frame: it holds a full-size picture. Raises
    MediaError (one line, naming the file) on failure."""
    name = os.fspath(path)
    with open_with_track(name, "video") as container:
        stream = container.streams.video[0]
        span = _span(container, stream)
        origin = span[0] if span is not None else _stream_start(stream)
        rate = stream.guessed_rate or stream.average_rate
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                time = _frame_time(frame, stream)
                if time is None:  # a raw elementary stream: go by the frame rate
                    time = origin + (Fraction(index) / rate if rate else Fraction(0))
                yield float(time - origin), frame
        except (av.FFmpegError, ValueError) as exc:
            raise media_error(name, "cannot decode video", exc) from exc
        if index < 0:
            raise media_error(name, "video track is empty")


def query_frames(
    path: str | os.PathLike[str], policy: FramePolicy, most: int = QUERY_FRAMES
) -> list[Image.Image]:
    """The pictures a video given as a query stands for, under an index's frame `policy`, at
    most `most`: the central frame; the frames of `every:S`, the step widened so that a long
    clip gives `most` frames spread over all of it; the first frames of its shots (`scenes`,
    the strongest `most` cuts). Pictures are shrunk to QUERY_SIDE pixels on their shorter
    side, so that a 4K clip holds little; a model's own resize takes them from there."""
    if policy.kind == "central":
        return [video_central_frame(path)[0]]
    if policy.kind == "mean":  # its frames, fused by the caller as the index averaged them
        assert policy.max_frames is not None
        spread = policy.spread(video_seconds(path))
        picked = spread.pick(video_frames(path), _query_picture, grey_thumbnails())
        return [p.pixels for p in picked[: min(policy.max_frames, most)]]
    if policy.kind == "every":
        assert policy.seconds is not None
        length = video_seconds(path) or 0.0
        policy = FramePolicy("every", seconds=max(policy.seconds, length / most))
    else:
        assert policy.max_frames is not None
        policy = FramePolicy("scenes", max_frames=min(policy.max_frames, most))
    picked = policy.pick(video_frames(path), _query_picture, grey_thumbnails())
    return [p.pixels for p in picked[:most]]


def clip_moments(
    path: str | os.PathLike[str], policy: FramePolicy, seconds: float, most: int | None = None
) -> list[tuple[float, float]]:
    """The clips of `seconds` a model of clips (MMV) embeds for a video under `policy`: one
    per moment the policy picks, placed by `clip_window`; `mean:N` gives N spread over the
    video. At most `most` (a query), an `every` step widened so that they cover the video."""
    duration = video_seconds(path)
    if policy.kind == "central":
        moment = video_central_frame(path)[1]
        return [clip_window(moment, moment, duration, seconds)]
    chosen = policy
    if policy.kind == "mean":
        assert policy.max_frames is not None
        chosen, most = policy.spread(duration), min(policy.max_frames, most or policy.max_frames)
    elif policy.kind == "every" and most is not None and duration:
        assert policy.seconds is not None
        chosen = FramePolicy("every", seconds=max(policy.seconds, duration / most))
    elif policy.kind == "scenes" and most is not None:
        assert policy.max_frames is not None
        chosen = FramePolicy("scenes", max_frames=min(policy.max_frames, most))
    if chosen.kind == "every" and duration:  # the times are known: no decoding pass
        assert chosen.seconds is not None
        starts = [k * chosen.seconds for k in range(math.ceil(duration / chosen.seconds - 1e-9))]
        starts = starts[:most] or [0.0]
    else:
        picked = chosen.pick(video_frames(path), lambda frame: None, grey_thumbnails())
        starts = [p.seconds for p in picked[:most]]
    spans = [(t, t) for t in starts] if policy.kind == "mean" else time_spans(starts, duration)
    return [clip_window(start, end, duration, seconds) for start, end in spans]


def video_clips(
    path: str | os.PathLike[str],
    windows: list[tuple[float, float]],
    size: int,
    frames: int,
    fps: float,
) -> Iterator[np.ndarray]:
    """The clip of each of `windows` (from `clip_moments`), in order: `frames` frames `fps` a
    second from the window's start, each cropped to `size` (`crop_square`), uint8
    [frames, size, size, 3]; decoded in one pass, each frame turned into pixels once."""
    from xsearch.media.image import crop_square

    def prepare(frame: av.VideoFrame) -> np.ndarray:
        return crop_square(frame_picture(frame), size)

    firsts = [first for first, _ in windows]
    return stream_clips(video_frames(path), firsts, frames, fps, prepare)


def _query_picture(frame: av.VideoFrame) -> Image.Image:
    picture = frame_picture(frame)
    scale = QUERY_SIDE / min(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return picture


def video_seconds(path: str | os.PathLike[str]) -> float | None:
    """The video stream's length in seconds, when the file says it."""
    with open_with_track(os.fspath(path), "video") as container:
        span = _span(container, container.streams.video[0])
    return float(span[1]) if span is not None else None


def frame_picture(frame: av.VideoFrame) -> Image.Image:
    """A decoded frame as an RGB image, turned by the display rotation phones store."""
    image = frame.to_image()
    # `rotation` is counterclockwise degrees, as PIL's rotate() takes them.
    return image.rotate(frame.rotation, expand=True) if frame.rotation else image


def grey_thumbnails(
    size: tuple[int, int] = SCENE_THUMB,
) -> Callable[[av.VideoFrame], np.ndarray]:
    """A function that shrinks a decoded frame to `size` (width, height) greyscale uint8
    pixels, straight from the decoder's planes (no full-size RGB copy): what shot-change
    detection compares. It reuses one scaler for every frame; a new one per frame costs
    several times the decoding itself."""
    width, height = size
    scaler = VideoReformatter()

    def grey(frame: av.VideoFrame) -> np.ndarray:
        return scaler.reformat(frame, width=width, height=height, format="gray").to_ndarray()

    return grey


def _grab(name: str, seconds: float | None) -> tuple[Image.Image, float]:
    with open_with_track(name, "video") as container:
        stream = container.streams.video[0]
        try:
            span = _span(container, stream)
            origin = span[0] if span is not None else _stream_start(stream)
            if seconds is not None:
                target = origin + Fraction(seconds).limit_denominator(1_000_000)
                found = _frame_at(container, stream, target, origin, name)
            elif span is None:
                found = _middle_by_count(container, stream, name)
                origin = Fraction(0)  # _middle_by_count counts from the stream's start
            else:
                start, duration = span
                found = _frame_at(container, stream, start + duration / 2, start, name)
            if found is None:
                raise media_error(name, "video track is empty")
            frame, time = found
            image = frame.to_image()
            rotation = frame.rotation
        except (av.FFmpegError, ValueError) as exc:
            raise media_error(name, "cannot decode video", exc) from exc
    if rotation:
        # `rotation` is counterclockwise degrees, as PIL's rotate() takes them.
        image = image.rotate(rotation, expand=True)
    return image, float(time - origin) if time is not None else 0.0


def _stream_start(stream) -> Fraction:
    if stream.start_time and stream.time_base:
        return Fraction(stream.start_time) * stream.time_base
    return Fraction(0)


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
