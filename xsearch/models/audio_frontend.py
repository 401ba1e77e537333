"""The learned time-frequency frontend of ESResNeXt-fbsp.

Frames the waveform, applies a learned complex "frequency B-spline" transform in place of
the FFT, and returns log-power in three frequency bands, one per input channel of the CNN.
The arithmetic follows the official AudioCLIP release (`model/esresnet/fbsp.py`) step for
step, so that float32 rounding matches too; only the bins the band split keeps are computed.
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
        """Complex weights [n_bins, n_fft], normalised by sqrt(n_fft).

        The steps and their order follow the official layer's float32 arithmetic, not a
        shorter equivalent: on digital silence the spectrogram holds only rounding noise
        (~-240 dB), and a different rounding there moves an embedding by up to 2e-3 cosine.
        """
        t = math.pi * torch.linspace(-1.0, 1.0, n_fft, device=self.m.device)[None, :] + EPS
        m, fb, fc = (p.float()[:, None] for p in (self.m, self.fb, self.fc))
        x = fb * t / (m + EPS)
        sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)
        # (sinc + 0j) ** (m + 0j) in polar form: |sinc| ** m at phase m * arg(sinc)
        magnitude = (sinc**2) ** 0.5
        phase = torch.zeros_like(sinc).atan2(sinc)
        power = (magnitude**2) ** (0.5 * m)
        win_re, win_im = power * torch.cos(m * phase), power * torch.sin(m * phase)
        k_re, k_im = torch.cos(fc * t), -torch.sin(fc * t)
        scale = fb.sqrt()
        re = scale * (win_re * k_re - win_im * k_im)
        im = scale * (win_re * k_im + win_im * k_re)
        return torch.complex(re / n_fft**0.5, im / n_fft**0.5)


def log_power_bands(
    wave: torch.Tensor,
    fbsp: FrequencyBSpline,
    window: torch.Tensor,
    n_fft: int,
    hop_length: int,
    bands: int = 3,
) -> torch.Tensor:
    """Waveform [batch, samples] in int16 scale -> log-power bands [batch, bands, h, frames].

    Bins past the band split (which drops `n_bins % bands` top bins) are never computed.

    Always computed in float32, autocast or not: the power spans some 250 dB, so in float16
    every bin below about -72 dB underflows to 0 and, with the floor itself underflowing
    too, becomes -inf dB (NaN embeddings for any audio with a quiet moment).
    """
    with torch.autocast(wave.device.type, enabled=False):
        return _log_power_bands(wave, fbsp, window, n_fft, hop_length, bands)


def _log_power_bands(
    wave: torch.Tensor,
    fbsp: FrequencyBSpline,
    window: torch.Tensor,
    n_fft: int,
    hop_length: int,
    bands: int,
) -> torch.Tensor:
    win_length = window.shape[0]
    per_band = fbsp.m.shape[0] // bands
    w = fbsp.matrix(n_fft)[: per_band * bands]
    weights = torch.cat((w.real, w.imag), dim=0)  # [2 * bins, n_fft]

    wave = wave.float()
    # int16 range onto [-1, 1], as the official `scale(x, -32768, 32767, -1, 1)`
    wave = (wave - INT16_MIN) * 2.0 / (INT16_MAX - INT16_MIN) - 1.0
    # Window, then zero-pad to n_fft, as the official code does: folding either into the
    # matrix changes the rounding that dominates on digital silence (see `matrix`).
    frames = frame(wave, win_length, hop_length) * window.float()
    padding = n_fft - win_length
    frames = nn.functional.pad(frames, (padding // 2, padding - padding // 2))
    spec = frames @ weights.T  # [batch, frames, 2 * bins]
    re, im = spec.chunk(2, dim=-1)
    power = (re * re + im * im).transpose(1, 2)  # [batch, bins, frames]
    power = torch.where(power > 0, power, torch.full_like(power, LOG10_FLOOR))
    return (10.0 * torch.log10(power)).unflatten(1, (bands, per_band))
