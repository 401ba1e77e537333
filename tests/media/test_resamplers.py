"""The resamplers a model can ask `load_audio` for: each keeps the content and gives the
length its official loader gives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers.media_factory import write_wav
from xsearch.media import load_audio


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.mark.parametrize("resampler", ["swr", "soxr_hq", "torchaudio_sinc"])
def test_a_tone_keeps_its_pitch_and_the_official_length(tmp_path, resampler):
    rate, seconds = 16000, 2.0
    t = np.arange(int(rate * seconds)) / rate
    path = tmp_path / "tone.wav"
    write_wav(path, 16384 * np.sin(2 * np.pi * 1000 * t), rate)
    wave = load_audio(path, 44100, resampler=resampler)
    expected = {
        "swr": round(len(t) * 44100 / rate),
        "soxr_hq": math.ceil(len(t) * (44100 / rate)),  # librosa's float length
        "torchaudio_sinc": math.ceil(len(t) * 441 / 160),  # torchaudio's reduced ratio
    }[resampler]
    assert abs(len(wave) - expected) <= (1 if resampler == "swr" else 0)
    assert _peak_hz(wave, 44100) == pytest.approx(1000, abs=2)
    middle = wave[4410:-4410]
    assert np.max(np.abs(middle)) == pytest.approx(16384, rel=0.01)


def test_the_sinc_filter_leaves_a_file_at_the_target_rate_alone(tmp_path):
    rate = 44100
    samples = np.random.default_rng(0).standard_normal(rate) * 3000
    write_wav(tmp_path / "x.wav", samples, rate)
    a = load_audio(tmp_path / "x.wav", rate, resampler="torchaudio_sinc")
    b = load_audio(tmp_path / "x.wav", rate, resampler="swr")
    assert np.array_equal(a, b)


def test_a_ratio_too_fine_for_the_sinc_kernel_falls_back_to_swr(tmp_path, monkeypatch):
    from xsearch.media import audio

    def refuse(*args):
        raise AssertionError("the sinc kernel was built")

    monkeypatch.setattr(audio, "_sinc_like_torchaudio", refuse)
    rate = 7919  # prime: torchaudio's kernel would have 44,100 phases of ~24,000 taps
    t = np.arange(rate) / rate
    write_wav(tmp_path / "odd.wav", 16384 * np.sin(2 * np.pi * 500 * t), rate)
    wave = load_audio(tmp_path / "odd.wav", 44100, resampler="torchaudio_sinc")
    assert abs(len(wave) - 44100) <= 1
    assert _peak_hz(wave, 44100) == pytest.approx(500, abs=2)
