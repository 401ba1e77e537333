"""The learned time-frequency frontend of ESResNeXt-fbsp.

Frames the waveform, applies a learned complex "frequency B-spline" transform in place of
the FFT, and returns log-power in three frequency bands, one per input channel of the CNN.
The arithmetic follows the official AudioCLIP release (`model/esresnet/fbsp.py`), re-derived:
the window and the zero-padding to `n_fft` are folded into the transform matrix, and only
the bins the band split keeps are computed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INT16_MIN, INT16_MAX = -32768.0, 32767.0
LOG10_FLOOR = 1e-18  # power values <= 0 are replaced by this before log10
EPS = 1e-8


def blackman_harris(length: int) -> torch.Tensor:
    """The periodic 4-term Blackman-Harris window (`scipy.signal.get_window(..., fftbins=True)`)."""
    n = torch.arange(length, dtype=torch.float64)
    x = 2.0 * math.pi * n / length
    w = 0.35875 - 0.48829 * torch.cos(x) + 0.14128 * torch.cos(2 * x) - 0.01168 * torch.cos(3 * x)
    return w.float()


def frame(signal: torch.Tensor, win_length: int, hop_length: int) -> torch.Tensor:
    """Cut [batch, samples] into [batch, frames, win_length], zero-padding both ends equally
    (the left side gets the smaller half) so that the frames cover every sample."""
    length = signal.shape[-1]
    n_frames = 1 if length <= win_length else 1 + math.ceil((length - win_length) / hop_length)
    padding = (n_frames - 1) * hop_length + win_length - length
    if padding > 0:
        signal = nn.functional.pad(signal, (padding // 2, padding - padding // 2))
    return signal.unfold(-1, win_length, hop_length)


class FrequencyBSpline(nn.Module):
    """Learned complex transform over `n_bins` output bins (parameters m, fb, fc)."""

    def __init__(self, n_bins: int) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.zeros(n_bins))
        self.fb = nn.Parameter(torch.ones(n_bins))
        self.fc = nn.Parameter(torch.arange(n_bins, dtype=torch.float32))
        # The official layer is built with bias=False, which still stores an empty tensor.
        self.bias = nn.Parameter(torch.empty(0))

    def matrix(self, n_fft: int) -> torch.Tensor:
        """Complex weights [n_bins, n_fft], normalised by sqrt(n_fft)."""
        t = math.pi * torch.linspace(-1.0, 1.0, n_fft, device=self.m.device) + EPS
        m, fb, fc = (p.float()[:, None] for p in (self.m, self.fb, self.fc))
        x = fb * t / (m + EPS)
        sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)
        # (sinc + 0j) ** m: a real base to a real power, phase pi where the base is negative
        phase = m * torch.where(sinc < 0, math.pi, 0.0)
        window = torch.polar(sinc.abs().pow(m), phase)
        kernel = torch.polar(torch.ones_like(x), -fc * t)
        return fb.sqrt() * window * kernel / math.sqrt(n_fft)


def log_power_bands(
    wave: torch.Tensor,
    fbsp: FrequencyBSpline,
    window: torch.Tensor,
    n_fft: int,
    hop_length: int,
    bands: int = 3,
) -> torch.Tensor:
    """Waveform [batch, samples] in int16 scale -> log-power bands [batch, bands, h, frames].

    The window and the centred zero-padding to n_fft are folded into the transform matrix,
    and bins past the band split (which drops `n_bins % bands` top bins) are never computed.
    """
    win_length = window.shape[0]
    per_band = fbsp.m.shape[0] // bands
    left = (n_fft - win_length) // 2
    w = fbsp.matrix(n_fft)[: per_band * bands, left : left + win_length] * window.float()
    weights = torch.cat((w.real, w.imag), dim=0)  # [2 * bins, win_length]

    wave = wave.float()
    # int16 range onto [-1, 1], as the official `scale(x, -32768, 32767, -1, 1)`
    wave = (wave - INT16_MIN) * 2.0 / (INT16_MAX - INT16_MIN) - 1.0
    spec = frame(wave, win_length, hop_length) @ weights.T  # [batch, frames, 2 * bins]
    re, im = spec.chunk(2, dim=-1)
    power = (re * re + im * im).transpose(1, 2)  # [batch, bins, frames]
    power = torch.where(power > 0, power, torch.full_like(power, LOG10_FLOOR))
    return (10.0 * torch.log10(power)).unflatten(1, (bands, per_band))
