"""Decode one media file into the items a model's towers take: this runs in a worker process.

Only PyAV, NumPy and Pillow are used (never torch), so workers start fast and stay small. The
result is a plain picklable `Decoded` that crosses the process boundary cheaply: images are
already resized and centre-cropped to the model's input size as uint8 (a video's frames too,
as the frame policy picks them, one at a time out of the decoder), and audio is cut into
fixed windows of the int16-scale waveform at the model's sample rate. When the caller gives a
place to spill to, frames over time and sound are written to files as they are decoded and
the `Decoded` only points at them (see `xsearch.ingest.spill`). A modality the model does not
embed is not decoded at all.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import av
import numpy as np

from xsearch.errors import MediaError
from xsearch.ingest.spill import FrameWriter, SoundWriter, remove_quietly, spill_paths
from xsearch.media import kind_of, load_audio, load_image, probe_kind, video_central_frame
from xsearch.media.audio import INT16_SCALE, audio_chunks, decoding_rate, media_error
from xsearch.media.frames import FramePolicy, Picked, time_spans
from xsearch.media.image import crop_square, model_input
from xsearch.media.kinds import UNSUPPORTED_HINTS, MediaKind, extension
from xsearch.media.video import (
    clip_moments,
    frame_picture,
    grey_thumbnails,
    video_clips,
    video_frames,
)

# A tail shorter than this is merged into the window before it rather than embedded on its own.
MIN_TAIL_SECONDS = 1.0
MEDIA_KINDS = ("audio", "image", "video")


class AudioWindow(NamedTuple):
    """One audio item: seconds [start, end) of the file and its float32 int16-scale waveform.

    A named tuple, so `for start, end, wave in decoded.audio` works too.
    """

    start: float
    end: float
    wave: np.ndarray


class Frame(NamedTuple):
    """One image item: the picture and, for a video's frame, the seconds it stands for (from
    its time until the next frame picked; the central frame: its time alone); None for an
    image file."""

    start: float | None
    end: float | None
    pixels: np.ndarray


@dataclass
class Decoded:
    """What one file decodes to.

    `frames` are the image items: one for an image, those of the frame policy for a video, in
    time order: a list, or for frames over time written to a file as they were picked, a
    `SpilledFrames` sequence that reads them from it (`audio` likewise: a list, or a
    `SpilledSound`). Their pixels are the uint8
    [size, size, 3] RGB input of the image tower, or when normalisation was asked for, the
    float32 [3, size, size] tensor the tower takes (see `model_input`); frames over time
    stay uint8 (a quarter of the memory), which the model normalises to the same values.
    `audio` are the windows of its audio track, in order. `duration` is the length in seconds
    of the audio (for a video without audio, or whose audio was not decoded, of the video);
    None for an image. A modality that was not asked for is left empty. `partial`: this is
    a video's sound alone, sent ahead of its frames over time (see `decode_file`'s
    `on_sound`); the whole `Decoded` follows.
    """

    path: str
    kind: str
    duration: float | None = None
    frames: Sequence[Frame] = field(default_factory=list)
    audio: Sequence[AudioWindow] = field(default_factory=list)
    partial: bool = False

    @property
    def image(self) -> np.ndarray | None:
        """The first frame's pixels (an image's own; a video's central frame by default)."""
        return self.frames[0].pixels if self.frames else None

    @property
    def frame_time(self) -> float | None:
        """The first frame's time in the video (None for an image, or no frame)."""
        return self.frames[0].start if self.frames else None


def decode_file(
    path: str | os.PathLike[str],
    window_seconds: float = 10.0,
    image_size: int | None = 224,
    sample_rate: int | None = 44100,
    image_norm: tuple[Sequence[float], Sequence[float]] | None = None,
    resampler: str = "swr",
    merge_tail: bool = True,
    frames: str = "central",
    channels: str = "mean",
    on_duration: Callable[[float], None] | None = None,
    spill_to: str | None = None,
    on_sound: Callable[[Decoded], None] | None = None,
    clip: tuple[int, float] | None = None,
) -> Decoded:
    """Decode `path` by its kind: image -> one image; audio -> windows; video -> the frames of
    the `frames` policy (see `FramePolicy`; by default the central frame) plus the windows of
    its audio track (none when it has no audio).

    The kind comes from the extension (`kind_of`), else from the content (`probe_kind`), so a
    file of an unlisted extension is still decoded when it holds media. `image_size` and
    `sample_rate` are the model's inputs; None means the model does not embed that modality,
    which is then not decoded (an image gives a `Decoded` without pixels, a video only its
    sound). `image_norm` (mean, std): the image is also normalised as the model wants it, so
    that the process running the model only runs the model. `resampler`: how audio reaches
    `sample_rate` and `channels` which sound of several it takes (see `load_audio`);
    `merge_tail`: see `cut_windows`. `on_duration(seconds)`
    hears a video's length before its frames over time are decoded, so that a caller can allow
    the time that takes. `spill_to`: a stem for new files (see `spill_paths`) that a video's
    frames over time and any file's sound are written to as they are decoded, so that a long
    file is never held in memory (`frames` and `audio` are then `SpilledFrames` and
    `SpilledSound`; the files are the caller's to remove, unless decoding fails). A video's
    sound is decoded before its frames: `on_sound(partial)` hears it then, when frames over
    time are still to come, so that a caller can embed the sound while they decode.
    `clip` (frames, fps): the model sees video clips (MMV): each moment the policy picks
    becomes a clip of that many frames around it (see `clip_moments`), uint8, and a picture
    stays one picture. Raises MediaError (one line, naming the file) when the file cannot be
    used.
    """
    frames_to, sound_to = spill_paths(spill_to) if spill_to is not None else (None, None)
    if FramePolicy.parse(frames).kind == "mean":
        frames_to = None  # one stacked item, held: nothing to spill
    name = os.fspath(path)
    kind = kind_of(name)
    if kind not in MEDIA_KINDS:
        kind = _kind_by_content(name)
    if kind == "image":
        if image_size is None:
            return Decoded(name, kind)
        pixels = crop_square(load_image(name), image_size)
        return Decoded(name, kind, frames=[Frame(None, None, _prepared(pixels, image_norm))])
    if kind == "audio":
        if sample_rate is None:
            return Decoded(name, kind)
        cut = (sample_rate, window_seconds, merge_tail, channels)
        audio, duration = _sound(name, resampler, cut, sound_to)
        return Decoded(name, kind, duration=duration, audio=audio)
    decoded = Decoded(name, "video")
    has_audio, video_seconds = _probe_video(name)
    policy = FramePolicy.parse(frames) if image_size is not None else None
    over_time = policy is not None and policy.kind != "central"
    if on_duration is not None and over_time and video_seconds is not None:
        on_duration(video_seconds)
    decoded.duration = video_seconds
    if has_audio and sample_rate is not None:
        cut = (sample_rate, window_seconds, merge_tail, channels)
        sound = _video_sound(name, resampler, cut, sound_to)
        if sound is not None:
            decoded.audio, decoded.duration = sound
            if on_sound is not None and over_time:
                on_sound(Decoded(name, "video", decoded.duration, audio=sound[0], partial=True))
    if policy is not None:
        try:
            if clip is not None:
                decoded.frames = _video_clips(name, policy, image_size or 0, clip, frames_to)
            else:
                decoded.frames = _video_frames(
                    name, policy, image_size or 0, image_norm, video_seconds, frames_to
                )
        except BaseException:  # the sound spilled already is of no use
            remove_quietly(sound_to)
            raise
    return decoded


# (sample rate, window seconds, merge_tail, channels): see cut_windows and load_audio
Cut = tuple[int, float, bool, str]


def _sound(
    name: str, resampler: str, cut: Cut, spill_to: str | None
) -> tuple[Sequence[AudioWindow], float]:
    """(the windows of `name`'s audio, its seconds): in memory, or written to the file
    `spill_to` as it is decoded and resampled."""
    sample_rate, window_seconds, merge_tail, channels = cut
    if spill_to is None:
        wave = load_audio(name, sample_rate, resampler=resampler, channels=channels)
        return cut_windows(wave, sample_rate, window_seconds, merge_tail), len(wave) / sample_rate
    with SoundWriter(spill_to) as writer:  # a decode that fails leaves no file behind
        if decoding_rate(name, sample_rate, resampler) == sample_rate:  # streamed through
            for chunk in audio_chunks(name, sample_rate, channels=channels):
                writer.append(chunk * np.float32(INT16_SCALE))
        else:  # a resampler that takes the whole wave
            writer.append(load_audio(name, sample_rate, resampler=resampler, channels=channels))
        bounds = window_bounds(writer.samples, sample_rate, window_seconds, merge_tail)
        return writer.close(sample_rate, bounds), writer.samples / sample_rate


def _video_frames(
    name: str,
    policy: FramePolicy,
    size: int,
    norm: tuple[Sequence[float], Sequence[float]] | None,
    video_seconds: float | None,
    spill_to: str | None = None,
) -> Sequence[Frame]:
    """The video's frames as `policy` picks them, each turned into the model's input as it
    comes out of the decoder; frames over time go to the file `spill_to` when given."""
    if policy.kind == "central":
        picture, seconds = video_central_frame(name)
        return [Frame(seconds, seconds, _prepared(crop_square(picture, size), norm))]

    def prepare(frame) -> np.ndarray:
        return crop_square(frame_picture(frame), size)  # uint8: see Decoded

    if policy.kind == "mean":  # one item: its frames stacked, averaged when embedded
        assert policy.max_frames is not None
        chosen = policy.spread(video_seconds).stream(video_frames(name), prepare, grey_thumbnails())
        held = list(itertools.islice(chosen, policy.max_frames))
        if not held:
            raise MediaError(f"{name}: video track is empty")
        stack = np.stack([_prepared(p.pixels, norm) for p in held])
        return [Frame(held[0].seconds, max(video_seconds or 0.0, held[-1].seconds), stack)]

    picked = policy.stream(video_frames(name), prepare, grey_thumbnails())
    if spill_to is not None:
        return _spilled(picked, spill_to, video_seconds)
    held = list(picked)
    starts = [chosen.seconds for chosen in held]
    return [
        Frame(start, end, chosen.pixels)
        for chosen, (start, end) in zip(held, time_spans(starts, video_seconds))
    ]


def _video_clips(
    name: str, policy: FramePolicy, size: int, clip: tuple[int, float], spill_to: str | None
) -> Sequence[Frame]:
    """The clips of a model of clips, one per moment of `policy` (uint8 [frames, size, size,
    3], spanning their window); `mean:N`: one item of N clips [N, frames, size, size, 3],
    averaged when embedded. Clips go to the file `spill_to` when given."""
    count, fps = clip
    windows = clip_moments(name, policy, count / fps)
    clips = video_clips(name, windows, size, count, fps)
    if policy.kind == "mean":
        return [Frame(windows[0][0], windows[-1][1], np.stack(list(clips)))]
    if spill_to is None:
        return [Frame(first, last, pixels) for (first, last), pixels in zip(windows, clips)]
    with FrameWriter(spill_to) as writer:  # a decode that fails leaves no file behind
        for (first, _), pixels in zip(windows, clips):
            writer.append(first, pixels)
        return writer.close(windows)


def _spilled(picked: Iterator[Picked], path: str, video_seconds: float | None) -> Sequence[Frame]:
    """Write each picked frame to the file at `path` as it comes: the frames in it."""
    with FrameWriter(path) as writer:  # a decode that fails leaves no file behind
        for chosen in picked:
            writer.append(chosen.seconds, chosen.pixels)
        return writer.close(time_spans(writer.starts, video_seconds))


def _kind_by_content(name: str) -> MediaKind:
    """The kind of a file whose extension says nothing, read from its content."""
    hint = UNSUPPORTED_HINTS.get(extension(name))
    if hint is not None:
        raise MediaError(f"{name}: {hint}")
    kind = probe_kind(name)
    if kind is None:
        if not os.path.exists(name):
            raise MediaError(f"{name}: cannot open: No such file or directory")
        raise MediaError(f"{name}: not an audio, image or video file that FFmpeg or Pillow reads")
    return kind


def cut_windows(
    wave: np.ndarray, sample_rate: int, window_seconds: float, merge_tail: bool = True
) -> list[AudioWindow]:
    """Cut `wave` into windows starting at 0, w, 2w, ... seconds (w = `window_seconds`).

    The last window keeps its shorter length when it is at least MIN_TAIL_SECONDS long, else it
    is merged into the window before it (so up to w + 1 s long) unless `merge_tail` is False
    (a model of fixed clips: no window may exceed its clip); a wave no longer than one window
    is one item. The windows are views of `wave`.
    """
    return [
        AudioWindow(start / sample_rate, end / sample_rate, wave[start:end])
        for start, end in window_bounds(len(wave), sample_rate, window_seconds, merge_tail)
    ]


def window_bounds(
    total: int, sample_rate: int, window_seconds: float, merge_tail: bool = True
) -> list[tuple[int, int]]:
    """The [start, end) sample ranges `cut_windows` cuts `total` samples into."""
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    step = max(1, round(window_seconds * sample_rate))
    bounds = [[start, min(start + step, total)] for start in range(0, total, step)]
    short = bounds[-1][1] - bounds[-1][0] < MIN_TAIL_SECONDS * sample_rate
    if merge_tail and len(bounds) > 1 and short:
        tail = bounds.pop()
        bounds[-1][1] = tail[1]
    return [(start, end) for start, end in bounds]


def _prepared(pixels: np.ndarray, norm: tuple[Sequence[float], Sequence[float]] | None):
    return pixels if norm is None else model_input(pixels, *norm)


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


def _video_sound(
    name: str, resampler: str, cut: Cut, spill_to: str | None
) -> tuple[Sequence[AudioWindow], float] | None:
    """The sound of a video, as `_sound`; None when its track holds no samples (a silent
    video)."""
    try:
        return _sound(name, resampler, cut, spill_to)
    except MediaError as exc:
        if str(exc).endswith(": audio track is empty"):
            return None
        raise
