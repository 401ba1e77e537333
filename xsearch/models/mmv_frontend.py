"""MMV's audio frontend: the log-mel spectrogram of DMVR's `compute_audio_spectrogram`, in numpy.

MMV (Alayrac et al., NeurIPS 2020) was trained on DeepMind's DMVR input pipeline, whose
`spectrogram_type="logmf"` path computes, on a mono float32 waveform:

1. optional peak normalisation `x / (max|x| + 1e-8)` and optional pre-emphasis
   `y[0] = x[0]; y[n] = x[n] - c x[n-1]` (both off by default);
2. `tf.signal.stft(frame_length, frame_step, fft_length=frame_length, hann_window,
   pad_end=True)`: ceil(samples / frame_step) frames, the end zero-padded so that the last
   frame is whole; TF's "periodic" Hann window 0.5 - 0.5 cos(2 pi n / N), where N is the
   frame length for an even length but frame length - 1 for an odd one (a TF quirk);
3. the magnitude |X| (or |X|^2 when `fft_output` is "magnitude_squared");
4. `tf.signal.linear_to_mel_weight_matrix`: HTK mel 1127 ln(1 + f / 700), mel_bins + 2
   edges evenly spaced in mel from lower_hz to upper_hz, triangles evaluated at the FFT
   bins' centre frequencies (linspace(0, sample_rate / 2, bins)), the DC bin forced to zero,
   no area normalisation;
5. `log(mel + 1e-6)`.

The mel matrix reproduces TF's float32 arithmetic step by step (linspace with exact end
points, float32 log, slopes, min/max); the FFT runs in float64, so the result differs from
TF's float32 FFT only by TF's own rounding (`tests/models/test_mmv_frontend.py` compares
with golden TF output).

Where the parameter values come from: the defaults below are DMVR's defaults of
`compute_audio_spectrogram` / `modalities.add_spectrogram`; no public MMV code confirms them
for MMV (the JAX release's `eval_ucf101.py` builds its dummy audio input as 96 frames x 40
mel bins, which is a shape for initialising parameters, not a frontend setting).

An empty waveform is refused with ValueError: TF returns zero frames for it, which no audio
tower can embed. Any other length gives ceil(samples / frame_step) >= 1 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np

from xsearch.errors import UsageError

FFT_OUTPUTS = ("magnitude", "magnitude_squared")
NORMALIZE_EPS = 1e-8  # DMVR's peak normalisation: x / (max|x| + 1e-8)
_CHUNK_FRAMES = 512  # frames per FFT batch: bounds the float64 scratch memory (~8 MB)


@dataclass(frozen=True)
class MmvAudioFrontend:
    """The parameters of DMVR's log-mel spectrogram (defaults: DMVR's own)."""

    sample_rate: int = 48000  # Hz the waveform must have (DMVR default; MMV: unconfirmed)
    frame_length: int = 2048  # STFT window, samples
    frame_step: int = 1024  # samples between frames
    fft_length: int = 2048  # FFT size; DMVR passes frame_length (each frame zero-padded if larger)
    mel_bins: int = 80  # DMVR's num_features
    lower_hz: float = 80.0  # lowest mel edge
    upper_hz: float = 7600.0  # highest mel edge (at most sample_rate / 2)
    log_offset: float = 1e-6  # log(mel + log_offset)
    fft_output: str = "magnitude"  # "magnitude" |X| or "magnitude_squared" |X|^2
    preemphasis: float | None = None  # pre-emphasis coefficient, None: off
    normalize: bool = False  # divide by (max|x| + 1e-8) first
    pad_end: bool = True  # zero-pad the end so that every sample is in a frame

    def __post_init__(self) -> None:
        for name in ("sample_rate", "frame_length", "frame_step", "fft_length", "mel_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.fft_length < self.frame_length:
            raise ValueError(
                f"fft_length {self.fft_length} is shorter than frame_length {self.frame_length}"
            )
        if not 0.0 <= self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= lower_hz < upper_hz <= sample_rate / 2, got {self.lower_hz}, "
                f"{self.upper_hz} at {self.sample_rate} Hz"
            )
        if not self.log_offset > 0.0:
            raise ValueError(f"log_offset must be positive, got {self.log_offset!r}")
        if self.fft_output not in FFT_OUTPUTS:
            raise ValueError(f"fft_output must be one of {FFT_OUTPUTS}, got {self.fft_output!r}")

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> MmvAudioFrontend:
        """The frontend of a model config's `audio.frontend` block; `raw` is the whole model
        config (it has an "audio" key) or that block itself. A missing key keeps DMVR's
        default. UsageError, in one line, for an unknown key or a bad value."""
        block: Any = raw
        if isinstance(raw, dict) and ("audio" in raw or "family" in raw):
            try:
                block = raw["audio"]["frontend"]
            except (KeyError, TypeError):
                raise UsageError("model config has no audio.frontend block") from None
        if not isinstance(block, dict):
            raise UsageError("model config audio.frontend must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise UsageError(
                f"model config audio.frontend: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(block)
        for name in ("lower_hz", "upper_hz", "log_offset"):
            if isinstance(values.get(name), int) and not isinstance(values[name], bool):
                values[name] = float(values[name])
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise UsageError(f"model config audio.frontend: {error}") from None

    def as_dict(self) -> dict[str, Any]:
        """The JSON block `from_config` reads back."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def frame_count(self, samples: int) -> int:
        """Frames `log_mel` gives for `samples` samples (TF's count; 0 for no samples)."""
        if self.pad_end:
            return -(-samples // self.frame_step)
        if samples < self.frame_length:
            return 0
        return 1 + (samples - self.frame_length) // self.frame_step

    def mel_matrix(self) -> np.ndarray:
        """TF's linear_to_mel_weight_matrix, float32 [fft_length // 2 + 1, mel_bins] (read-only)."""
        return mel_weight_matrix(
            self.mel_bins, self.fft_length // 2 + 1, self.sample_rate, self.lower_hz, self.upper_hz
        )

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """float32 [frames, mel_bins] log-mel spectrogram of a mono waveform in [-1, 1].

        ValueError for a waveform that is not 1-D or is empty (see the module docstring)."""
        x = np.asarray(wave)
        if x.ndim != 1:
            raise ValueError(f"log_mel takes a mono 1-D waveform, got shape {x.shape}")
        if x.size == 0:
            raise ValueError("log_mel got an empty waveform (TF would give zero frames)")
        x = x.astype(np.float32, copy=False)
        if self.normalize:
            x = x / (np.max(np.abs(x)) + np.float32(NORMALIZE_EPS))
        if self.preemphasis is not None:
            x = np.concatenate([x[:1], x[1:] - np.float32(self.preemphasis) * x[:-1]])
        count = self.frame_count(x.size)
        if count == 0:
            raise ValueError(
                f"log_mel got {x.size} samples, fewer than one frame ({self.frame_length})"
            )
        padded = (count - 1) * self.frame_step + self.frame_length
        if padded > x.size:
            x = np.concatenate([x, np.zeros(padded - x.size, np.float32)])
        frames = np.lib.stride_tricks.sliding_window_view(x[:padded], self.frame_length)
        frames = frames[:: self.frame_step]
        window = hann_window(self.frame_length).astype(np.float64)
        mel = self.mel_matrix().astype(np.float64)
        out = np.empty((count, self.mel_bins), np.float32)
        for start in range(0, count, _CHUNK_FRAMES):
            chunk = frames[start : start + _CHUNK_FRAMES] * window
            # The windowed frame is rounded to float32 as TF holds it, then transformed in float64.
            chunk = chunk.astype(np.float32).astype(np.float64)
            spectrum = np.abs(np.fft.rfft(chunk, n=self.fft_length, axis=-1))
            if self.fft_output == "magnitude_squared":
                spectrum = spectrum * spectrum
            out[start : start + _CHUNK_FRAMES] = np.log(spectrum @ mel + self.log_offset)
        return out


def hann_window(length: int) -> np.ndarray:
    """`tf.signal.hann_window(length)` (periodic=True) in float32, with TF's arithmetic: the
    denominator is `length` for an even length and `length - 1` for an odd one."""
    return _hann_window(length)


@lru_cache(maxsize=8)
def _hann_window(length: int) -> np.ndarray:
    if length == 1:
        window = np.ones(1, np.float32)
    else:
        denominator = np.float32(length if length % 2 == 0 else length - 1)
        count = np.arange(length, dtype=np.float32)
        angle = np.float32(2.0 * math.pi) * count / denominator
        window = np.float32(0.5) - np.float32(0.5) * np.cos(angle)
    window.setflags(write=False)
    return window


def _hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel, in float32 as TF computes it: 1127 ln(1 + f / 700)."""
    hertz = np.asarray(hertz, np.float32)
    return np.float32(1127.0) * np.log(np.float32(1.0) + hertz / np.float32(700.0))


def _tf_linspace(start: np.ndarray | float, stop: np.ndarray | float, num: int) -> np.ndarray:
    """tf.linspace in float32: start + k * (stop - start) / (num - 1), end points exact."""
    start, stop = np.float32(start), np.float32(stop)
    delta = (stop - start) / np.float32(max(num - 1, 1))
    inner = start + delta * np.arange(1, max(num - 1, 1), dtype=np.float32)
    return np.concatenate([[start], inner, [stop]]).astype(np.float32)[:num]


def mel_weight_matrix(
    mel_bins: int, spectrogram_bins: int, sample_rate: int, lower_hz: float, upper_hz: float
) -> np.ndarray:
    """`tf.signal.linear_to_mel_weight_matrix(mel_bins, spectrogram_bins, sample_rate,
    lower_hz, upper_hz)`, float32 [spectrogram_bins, mel_bins], cached per parameters and
    returned read-only."""
    return _mel_weight_matrix(
        int(mel_bins), int(spectrogram_bins), int(sample_rate), float(lower_hz), float(upper_hz)
    )


@lru_cache(maxsize=16)
def _mel_weight_matrix(
    mel_bins: int, spectrogram_bins: int, sample_rate: int, lower_hz: float, upper_hz: float
) -> np.ndarray:
    nyquist = np.float32(sample_rate) / np.float32(2.0)
    # TF drops the DC bin before computing the triangles and adds it back as a zero row.
    bins_mel = _hertz_to_mel(_tf_linspace(np.float32(0.0), nyquist, spectrogram_bins)[1:])[:, None]
    edges = _tf_linspace(_hertz_to_mel(lower_hz), _hertz_to_mel(upper_hz), mel_bins + 2)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(np.float32(0.0), np.minimum(rising, falling)).astype(np.float32)
    matrix = np.concatenate([np.zeros((1, mel_bins), np.float32), weights])
    matrix.setflags(write=False)
    return matrix
