"""Generate small test media with PyAV's bundled FFmpeg, so the tests need no fixture files."""

from __future__ import annotations

import io
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

_LAYOUTS = {1: "mono", 2: "stereo"}


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine wave in [-1, 1]."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int) -> None:
    """Write int16 `samples`, shape (n,) or (n, channels), as a 16-bit PCM wav."""
    samples = np.asarray(samples, dtype=np.int16)
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    with av.open(os.fspath(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout=_LAYOUTS[channels])
        _encode_audio(container, stream, samples, "s16", rate)


def write_audio(
    path: str | os.PathLike[str],
    wave: np.ndarray,
    rate: int,
    codec: str,
    *,
    stream_rate: int | None = None,
    format: str | None = None,
) -> None:
    """Encode float `wave` in [-1, 1], shape (n,) or (n, channels), with `codec`.

    The container comes from the extension of `path` (or `format`). `stream_rate` is the
    encoder's rate when it differs from `rate` (Opus only codes 48 kHz); PyAV resamples.
    FFmpeg's native Vorbis encoder only takes stereo.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[:, None]
    channels = wave.shape[1]
    with av.open(os.fspath(path), "w", format=format) as container:
        stream = container.add_stream(codec, rate=stream_rate or rate, layout=_LAYOUTS[channels])
        if codec == "vorbis":
            # FFmpeg's native Vorbis encoder is flagged experimental.
            stream.codec_context.options = {"strict": "experimental"}
        _encode_audio(container, stream, wave, "flt", rate)


def _encode_audio(container, stream, samples: np.ndarray, fmt: str, rate: int) -> None:
    channels = samples.shape[1]
    step = 1024
    for start in range(0, samples.shape[0], step):
        block = np.ascontiguousarray(samples[start : start + step])
        # Packed formats take one row of interleaved samples.
        frame = av.AudioFrame.from_ndarray(
            block.reshape(1, -1), format=fmt, layout=_LAYOUTS[channels]
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def frame_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of frame `index` in `write_video`: distinct for indices 0..63."""
    return (16 + 3 * index, 235 - 3 * index, 64 + (index % 4) * 40)


MARKER = 8  # side of the white square in the top-left corner of every video frame


def write_video(
    path: str | os.PathLike[str],
    n_frames: int,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    *,
    codec: str = "libx264",
    format: str | None = None,
    gop: int | None = None,
    with_audio: bool = True,
    audio_freq: float = 440.0,
    audio_rate: int = 44100,
    rotation: int | None = None,
    seekable: bool = True,
    options: dict[str, str] | None = None,
) -> None:
    """Write a video whose frame i is filled with `frame_colour(i)`, plus an AAC sine track.

    Every frame has a white MARKER-pixel square in its top-left corner, to tell orientation.
    The audio lasts as long as the video. `gop` sets the keyframe interval, so that seeking
    has to land before the target and decode forward. `rotation` stores a display rotation
    (counterclockwise degrees), as phones do. `seekable=False` writes through a pipe-like
    file, so muxers cannot go back to fill in the duration. `options` go to the muxer.
    """
    width, height = size
    sink = _Pipe() if not seekable else None
    with av.open(
        sink if sink is not None else os.fspath(path), "w", format=format, options=options
    ) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        if gop is not None:
            video.codec_context.gop_size = gop
        if codec == "libx264":
            # Near-lossless, and no scene-cut keyframes so that `gop` alone places them.
            video.codec_context.options = {"crf": "4", "sc_threshold": "0"}
        else:
            video.bit_rate = 4_000_000
        if rotation is not None:
            video.set_display_rotation(rotation)
        audio = None
        if with_audio:
            audio = container.add_stream("aac", rate=audio_rate, layout="mono")
        for i in range(n_frames):
            rgb = np.empty((height, width, 3), dtype=np.uint8)
            rgb[:] = frame_colour(i)
            rgb[:MARKER, :MARKER] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            wave = sine(audio_freq, n_frames / fps, audio_rate)
            _encode_audio(container, audio, wave[:, None], "flt", audio_rate)
    if sink is not None:
        with open(path, "wb") as file:
            file.write(sink.data)


def frame_index(rgb: np.ndarray) -> int:
    """Which `frame_colour` the centre of a decoded frame (H, W, 3 uint8) is closest to."""
    h, w = rgb.shape[:2]
    centre = rgb[h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4].reshape(-1, 3).mean(axis=0)
    distances = [np.abs(np.subtract(frame_colour(i), centre)).sum() for i in range(64)]
    return int(np.argmin(distances))


class _Pipe(io.RawIOBase):
    """A write-only, unseekable file: what a muxer writing to a pipe sees."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        self.data += b
        return len(b)


def mixed_folder(folder: Path, n: int, seed: int, sidecar_every: int = 3) -> Path:
    """`n` small distinct files: sounds (those at multiples of `sidecar_every` with a sidecar
    text) and pictures."""
    from xsearch.samples import audio_samples, image_samples
    from xsearch.samples import write_wav as write_float_wav

    folder.mkdir(parents=True)
    waves = list(audio_samples(seconds=1.0).values())
    pictures = list(image_samples((64, 48)).values())
    rng = np.random.default_rng(seed)
    for i in range(n):
        if i % 2:
            picture = pictures[i % len(pictures)].copy()
            picture.putpixel((0, 0), tuple(int(c) for c in rng.integers(0, 255, 3)))
            picture.save(folder / f"p{seed}-{i}.png")
        else:
            wave = waves[i % len(waves)] * (0.5 + 0.5 * rng.random())
            write_float_wav(folder / f"a{seed}-{i}.wav", wave.astype(np.float32))
            if i % sidecar_every == 0:
                (folder / f"a{seed}-{i}.txt").write_text(f"sound {seed} {i}")
    return folder


def png_declaring(path: Path, width: int, height: int) -> None:
    """A small valid PNG whose header claims `width` x `height` (a decompression bomb)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))  # type + 13 data bytes
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
