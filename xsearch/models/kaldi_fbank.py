"""Kaldi's log mel filterbank as `torchaudio.compliance.kaldi.fbank` computes it, in torch.

CAV-MAE's loader calls `kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000,
use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)`;
every other option keeps Kaldi's default, and each default matters: 25 ms frames every 10 ms,
only whole frames (snip_edges), each frame's DC offset removed, pre-emphasis 0.97 (the first
sample against itself), a symmetric Hann window, zero padding to a power of two (400 -> 512
samples), the power spectrum, triangular filters evenly spaced on the mel scale
1127 ln(1 + f/700) from 20 Hz to Nyquist, the log floored at float32's epsilon. With
use_energy off, `htk_compat` changes nothing.

Written here rather than imported: torchaudio is built against one torch release, none
matches the torch this package runs, and these few operations are all that is needed
(`tests/models/test_cav_mae_fidelity.py` compares them with torchaudio's output).
"""

from __future__ import annotations

import math
from functools import cache

import torch

FRAME_SECONDS = 0.025
SHIFT_SECONDS = 0.010
PREEMPHASIS = 0.97
LOW_HZ = 20.0


def frame_count(samples: int, sample_rate: int) -> int:
    """Frames of `samples` samples (whole frames only, as Kaldi's snip_edges)."""
    length, shift = _frame_sizes(sample_rate)
    return 0 if samples < length else 1 + (samples - length) // shift


def _frame_sizes(sample_rate: int) -> tuple[int, int]:
    return int(sample_rate * FRAME_SECONDS), int(sample_rate * SHIFT_SECONDS)


def fbank(wave: torch.Tensor, sample_rate: int, mel_bins: int) -> torch.Tensor:
    """Log mel filterbank energies [frames, mel_bins] of a 1-D float waveform."""
    length, shift = _frame_sizes(sample_rate)
    count = frame_count(wave.shape[-1], sample_rate)
    if count == 0:
        return wave.new_zeros((0, mel_bins))
    frames = wave.as_strided((count, length), (shift, 1))
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - PREEMPHASIS * previous
    frames = frames * _window(length, wave.dtype)
    padded = 1 << (length - 1).bit_length()
    spectrum = torch.fft.rfft(frames, n=padded).abs().pow(2.0)
    energies = spectrum @ _mel_banks(mel_bins, padded, sample_rate).to(wave.dtype).T
    floor = torch.finfo(wave.dtype).eps
    return torch.clamp(energies, min=floor).log()


@cache
def _window(length: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(length, periodic=False, dtype=dtype)


def _mel(hz: torch.Tensor | float):
    if isinstance(hz, torch.Tensor):
        return 1127.0 * (1.0 + hz / 700.0).log()  # not log1p: Kaldi's rounding
    return 1127.0 * math.log(1.0 + hz / 700.0)


@cache
def _mel_banks(bins: int, padded: int, sample_rate: int) -> torch.Tensor:
    """[bins, padded // 2 + 1] triangles (the last FFT bin, Nyquist, gets no weight)."""
    fft_bins = padded // 2
    low, high = _mel(LOW_HZ), _mel(sample_rate / 2)
    delta = (high - low) / (bins + 1)
    index = torch.arange(bins, dtype=torch.float32).unsqueeze(1)
    left = low + index * delta
    centre = low + (index + 1.0) * delta
    right = low + (index + 2.0) * delta
    mel = _mel(sample_rate / padded * torch.arange(fft_bins, dtype=torch.float32)).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))
