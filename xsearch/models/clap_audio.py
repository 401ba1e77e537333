"""A CLAP model's clip from a waveform, as the official wrappers prepare it (NumPy only).

Input: mono audio at the model's sample rate in int16 scale (float32 values in
-32768..32767, what the decoders give). Output: exactly one clip of `clip_samples` float32
samples in [-1, 1], the model's input.

- LAION-CLAP (`laion_clap` `get_audio_embedding_from_filelist`): librosa's float samples
  (x / 32768), an int16 round trip that truncates toward zero
  (`(clip(x, -1, 1) * 32767).astype(int16) / 32767`); a shorter clip is repeated
  int(clip_samples / length) whole times, then zero-padded ("repeatpad").
- Microsoft CLAP (`CLAPWrapper.load_audio_into_tensor`): x / 32768 (torchaudio's scale); a
  shorter clip is repeated ceil(clip_samples / length) times and cut to the clip ("tile").

Longer audio: both official wrappers take one random crop. `prepare_clip` takes the first
`clip_samples` instead; callers that want all of a long file cut it into consecutive windows
themselves (the encoder does) and prepare each one. Empty audio gives a silent clip (the
official code divides by its length and fails).
"""

from __future__ import annotations

import math

import numpy as np

from xsearch.models.clap_config import ClapConfig

INT16_SCALE = np.float32(32768.0)  # int16 scale -> [-1, 1), as librosa and torchaudio read WAV
INT16_MAX = np.float32(32767.0)  # LAION's quantisation step


def int16_round_trip(x: np.ndarray) -> np.ndarray:
    """LAION's quantisation: to int16 (clipped, truncated toward zero) and back, / 32767."""
    quantised = (np.clip(x, -1.0, 1.0) * INT16_MAX).astype(np.int16)
    return (quantised / 32767.0).astype(np.float32)  # divided in float64, as the original


def prepare_clip(wave: np.ndarray, config: ClapConfig) -> np.ndarray:
    """One model clip, float32 [clip_samples], from `wave` (mono, int16 scale, at the model's
    rate): scaled to [-1, 1], LAION's int16 round trip where the config asks for it, the first
    clip_samples of a longer wave, a shorter one filled by the config's rule."""
    audio = config.audio
    size = audio.clip_samples
    x = np.asarray(wave, dtype=np.float32).reshape(-1)[:size] / INT16_SCALE
    if audio.int16_round_trip:
        x = int16_round_trip(x)
    n = len(x)
    if n == 0:
        return np.zeros(size, dtype=np.float32)
    if n < size:
        if audio.fill == "repeatpad":
            x = np.tile(x, size // n)
            x = np.concatenate([x, np.zeros(size - len(x), dtype=np.float32)])
        elif audio.fill == "tile":
            x = np.tile(x, math.ceil(size / n))[:size]
        else:
            raise ValueError(f"unknown fill rule {audio.fill!r} in config {config.name}")
    return np.ascontiguousarray(x, dtype=np.float32)


def clip_windows(wave: np.ndarray, clip_samples: int) -> list[np.ndarray]:
    """Consecutive clip-length windows covering `wave` (the last one may be shorter); one
    empty window for an empty wave."""
    wave = np.asarray(wave).reshape(-1)
    count = max(1, math.ceil(len(wave) / clip_samples))
    return [wave[i * clip_samples : (i + 1) * clip_samples] for i in range(count)]
