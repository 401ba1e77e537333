"""Decode the audio track of any file FFmpeg reads into the waveform AudioCLIP expects.

AudioCLIP's audio tower was trained on 44.1 kHz mono waveforms in int16 scale (float samples in
[-1, 1) times 32768), so that is what `load_audio` returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import av
import numpy as np

from xsearch.errors import MediaError

INT16_SCALE = 32768.0
DEFAULT_MAX_SECONDS = 3 * 60 * 60.0

# Without a maxval, libswresample leaves float downmix matrices unnormalised: stereo -> mono
# is 0.7071 * (L + R), so a stereo file would come out 3 dB louder than its mono twin.
_SWR_OPTIONS = {"rematrix_maxval": "1.0"}
# How a waveform reaches the model's rate (EncoderSpec.audio.resampler).
RESAMPLERS = ("swr", "soxr_hq", "torchaudio_sinc")
# torchaudio's filter has one phase per output sample of a period: for rates whose ratio
# reduces to large numbers its kernel would not fit in memory, and swr is used instead.
_MAX_SINC_KERNEL = 1 << 24


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = 44100,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    resampler: str = "swr",
    channels: str = "mean",
) -> np.ndarray:
    """Decode the first audio track of `path` to a float32 1-D mono waveform in int16 scale.

    Works for audio files and for the audio track of video files. Multi-channel audio is
    downmixed with libswresample's mono rematrix, normalised so its coefficients sum to 1: stereo
    becomes exactly (L + R) / 2, the channel mean AudioCLIP was trained on (librosa's to_mono),
    and no layout can clip. The waveform is resampled to `sample_rate` by libswresample, or,
    with `resampler="soxr_hq"`, decoded at its own rate and resampled by soxr's HQ filter to
    the length librosa gives (`ceil(n * sample_rate / rate)`, zero-padded): how LAION-CLAP's
    own loader (`librosa.load`) prepares audio, kept so its vectors match the official ones.
    With `resampler="torchaudio_sinc"`, decoded at its own rate and, when that differs,
    resampled by the filter of torchaudio's `Resample` with its defaults (a Hann-windowed
    sinc, 6 zero crossings, rolloff 0.99) to ceil(n * sample_rate / rate) samples: how
    Microsoft CLAP's loader resamples (it leaves 44.1 kHz files as they are).
    `channels="first"` takes the first channel instead of the mean (CAV-MAE's loader).

    Raises MediaError (one line, naming the file) when the file cannot be opened, has no audio
    track, decodes to nothing, or would decode to more than `max_seconds` of audio (None: no
    limit); the limit keeps a multi-hour file from exhausting memory.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if resampler not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {', '.join(RESAMPLERS)}, got {resampler!r}")
    name = os.fspath(path)
    rate = decoding_rate(name, sample_rate, resampler)
    chunks = list(audio_chunks(name, rate, max_seconds=max_seconds, channels=channels))
    wave = np.concatenate(chunks) if len(chunks) > 1 else chunks[0].copy()
    if rate != sample_rate and resampler == "soxr_hq":
        wave = _soxr_like_librosa(wave, rate, sample_rate)
    elif rate != sample_rate:
        wave = _sinc_like_torchaudio(wave, rate, sample_rate)
    wave *= INT16_SCALE
    return wave


def decoding_rate(name: str, sample_rate: int, resampler: str) -> int:
    """The rate `load_audio` decodes `name` at: `sample_rate` when libswresample takes the
    audio there, else the track's own rate (resampled after decoding)."""
    if resampler == "swr":
        return sample_rate
    with open_with_track(name, "audio") as container:
        native = container.streams.audio[0].codec_context.sample_rate
    if native and _resampled_later(resampler, native, sample_rate):
        return native
    return sample_rate


def audio_chunks(
    path: str | os.PathLike[str],
    rate: int,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    channels: str = "mean",
) -> Iterator[np.ndarray]:
    """The first audio track of `path` as float32 mono chunks in [-1, 1) at `rate` (by
    libswresample), one at a time as they are decoded, so that a long track can be written
    away without being held (`load_audio` describes the downmix and the errors, raised as
    the decoding reaches them)."""
    name = os.fspath(path)
    limit = None if max_seconds is None else int(max_seconds * rate)
    too_long = f"audio is longer than the {max_seconds or 0:g} s limit"
    total = 0
    first_error: Exception | None = None
    with open_with_track(name, "audio") as container:
        stream = container.streams.audio[0]
        mono = _MonoResampler(rate, first=channels == "first")
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.InvalidDataError as exc:
                    # Like the ffmpeg CLI, skip a damaged packet rather than lose the whole file.
                    first_error = first_error or exc
                    continue
                for frame in frames:
                    for chunk in mono.resample(frame):
                        total += chunk.shape[0]
                        if limit is not None and total > limit:
                            raise media_error(name, too_long)
                        yield chunk
            for chunk in mono.flush():
                total += chunk.shape[0]
                if limit is not None and total > limit:
                    raise media_error(name, too_long)
                yield chunk
        except (av.FFmpegError, ValueError) as exc:
            raise media_error(name, "cannot decode audio", exc) from exc
    if total == 0:
        if first_error is not None:
            raise media_error(name, "cannot decode audio", first_error)
        raise media_error(name, "audio track is empty")


def open_with_track(name: str, track: str):
    """The opened container of a file with a `track` ("audio" or "video") track; MediaError
    (one line) otherwise."""
    try:
        container = av.open(name)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise media_error(name, "cannot open", exc) from exc
    if not getattr(container.streams, track):
        container.close()
        raise media_error(name, f"no {track} track")
    return container


def _soxr_like_librosa(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """librosa.resample(res_type="soxr_hq"): soxr's HQ filter, then the length librosa
    computes in floating point, ceil(n * (target / rate)); it can exceed soxr's own by one
    sample (a 5 s 44.1 kHz clip becomes 240,001 samples at 48 kHz), padded with zeros."""
    import soxr

    out = soxr.resample(wave, rate, target, quality="HQ").astype(np.float32, copy=False)
    length = int(np.ceil(wave.shape[-1] * (float(target) / rate)))
    if out.shape[0] >= length:
        return np.ascontiguousarray(out[:length])
    return np.concatenate([out, np.zeros(length - out.shape[0], dtype=np.float32)])


def _resampled_later(resampler: str, rate: int, target: int) -> bool:
    """Whether `resampler` takes audio at `rate` to `target` after decoding (else swr does)."""
    if resampler != "torchaudio_sinc":
        return True
    orig, new, width = _sinc_shape(rate, target)
    return new * (2 * width + orig) <= _MAX_SINC_KERNEL


def _sinc_shape(rate: int, target: int, zeros: int = 6, rolloff: float = 0.99):
    """torchaudio's reduced rates (orig, new) and its filter's half width in input samples."""
    common = math.gcd(rate, target)
    orig, new = rate // common, target // common
    return orig, new, math.ceil(zeros * orig / (min(orig, new) * rolloff))


def _sinc_like_torchaudio(
    wave: np.ndarray, rate: int, target: int, zeros: int = 6, rolloff: float = 0.99
) -> np.ndarray:
    """torchaudio.transforms.Resample(rate, target) with its defaults, on a float32 wave:
    the polyphase Hann-windowed sinc built as torchaudio builds it (its output phases in
    float32, the rest in float64, the kernel cast to float32), applied with the same zero
    padding and cut to torchaudio's length, ceil(n * target / rate). Written here because
    torchaudio is not a dependency (see DESIGN); tested equal to it to float32 rounding."""
    orig, new, width = _sinc_shape(rate, target, zeros, rolloff)
    base = min(orig, new) * rolloff
    taps = np.arange(-width, width + orig, dtype=np.float64) / orig
    phases = (np.arange(0, -new, -1, dtype=np.float32) / np.float32(new)).astype(np.float64)
    t = np.clip((phases[:, None] + taps[None, :]) * base, -zeros, zeros)
    window = np.cos(t * math.pi / zeros / 2) ** 2
    t *= math.pi
    safe = np.where(t == 0, 1.0, t)
    sinc = np.where(t == 0, 1.0, np.sin(safe) / safe)
    kernel = (sinc * window * (base / orig)).astype(np.float32)  # [new, taps]
    n = wave.shape[-1]
    padded = np.pad(wave.astype(np.float32, copy=False), (width, width + orig))
    blocks = (padded.shape[-1] - kernel.shape[1]) // orig + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1])[::orig][:blocks]
    out = (frames @ kernel.T).reshape(-1)
    return np.ascontiguousarray(out[: math.ceil(new * n / orig)], dtype=np.float32)


class _MonoResampler:
    """av.AudioResampler to float mono at a fixed rate, rebuilt if the input format changes.

    PyAV's resampler is configured by its first frame and refuses frames of another format,
    layout or rate, which some streams (chained Ogg, HE-AAC switching) do produce mid-track.
    """

    def __init__(self, rate: int, first: bool = False) -> None:
        self.rate = rate
        self.first = first  # the first channel rather than the mean of them all
        self._resampler: av.AudioResampler | None = None
        self._source: tuple[str, str, int] | None = None

    def resample(self, frame: av.AudioFrame) -> list[np.ndarray]:
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[np.ndarray] = []
        if source != self._source:
            out.extend(self.flush())
            layout = frame.layout.name if self.first else "mono"
            self._resampler = av.AudioResampler(
                format="fltp", layout=layout, rate=self.rate, options=_SWR_OPTIONS
            )
            self._source = source
        assert self._resampler is not None
        out.extend(_mono(f) for f in self._resampler.resample(frame) if f is not None)
        return out

    def flush(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        # Flushing drains the samples the resampler's filter still holds; a passthrough
        # resampler answers [None] here, hence the filter on None.
        frames = self._resampler.resample(None)
        self._resampler = None
        self._source = None
        return [_mono(f) for f in frames if f is not None]


def _mono(frame: av.AudioFrame) -> np.ndarray:
    # fltp mono comes out as shape (1, samples).
    return frame.to_ndarray()[0].astype(np.float32, copy=False)


def media_error(name: str, what: str, exc: BaseException | None = None) -> MediaError:
    """Build a one-line MediaError "NAME: WHAT: REASON" from a decoder exception."""
    message = f"{name}: {what}"
    if exc is not None:
        message += f": {_reason(exc)}"
    return MediaError(" ".join(message.splitlines()))


def _reason(exc: BaseException) -> str:
    # FFmpegError's str() repeats the errno and file name; strerror is just the reason.
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(reason).split())
