"""prepare_clip: the official wrappers' clip rules on exact small arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xsearch.models.clap_audio import clip_windows, int16_round_trip, prepare_clip
from xsearch.models.clap_config import clap_config


def _with_clip(name: str, samples: int):
    """The config `name` with a clip of `samples` samples (at its sample rate)."""
    cfg = clap_config(name)
    seconds = samples / cfg.audio.sample_rate
    return dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, clip_seconds=seconds))


LAION = _with_clip("laion-clap-tiny", 10)
MS = _with_clip("msclap-2023-tiny", 10)
WAVE = np.array([16384, -32768, 1000], dtype=np.float32)  # int16 scale


def test_laion_round_trips_through_int16_then_repeats_whole_copies_and_zero_pads():
    clip = prepare_clip(WAVE, LAION)
    # 16384 / 32768 = 0.5 -> int16(0.5 * 32767) = 16383 -> / 32767; 1000/32768 * 32767 = 999.97
    # truncates to 999
    one = np.array([16383, -32767, 999]) / 32767
    want = np.concatenate([one, one, one, [0.0]]).astype(np.float32)  # int(10 / 3) = 3 copies
    assert clip.dtype == np.float32 and clip.shape == (10,)
    np.testing.assert_array_equal(clip, want)


def test_laion_int16_round_trip_clips_and_truncates_toward_zero():
    x = np.array([1.5, -1.5, 0.99999, -0.00002, 0.00002], dtype=np.float32)
    want = np.array([32767, -32767, 32766, 0, 0]) / 32767
    np.testing.assert_array_equal(int16_round_trip(x), want.astype(np.float32))


def test_ms_clap_scales_then_tiles_ceil_times_and_cuts():
    clip = prepare_clip(WAVE, MS)
    one = np.array([0.5, -1.0, 1000 / 32768], dtype=np.float32)
    np.testing.assert_array_equal(clip, np.tile(one, 4)[:10])  # ceil(10 / 3) = 4 copies


def test_a_length_that_divides_the_clip_fills_it_exactly():
    five = np.arange(1, 6, dtype=np.float32) * 1000
    np.testing.assert_array_equal(prepare_clip(five, MS), np.tile(five / 32768, 2))
    laion = prepare_clip(five, LAION)
    assert laion[5:].tolist() == laion[:5].tolist() and (laion != 0).all()


def test_longer_waves_give_their_first_clip():
    wave = np.arange(25, dtype=np.float32) * 100
    np.testing.assert_array_equal(prepare_clip(wave, MS), wave[:10] / 32768)
    assert prepare_clip(wave, LAION).tolist() == prepare_clip(wave[:10], LAION).tolist()


@pytest.mark.parametrize("cfg", [LAION, MS], ids=["laion", "msclap"])
def test_empty_audio_gives_a_silent_clip(cfg):
    clip = prepare_clip(np.zeros(0, dtype=np.float32), cfg)
    assert clip.shape == (10,) and clip.dtype == np.float32 and not clip.any()


def test_int16_input_and_full_size_clips():
    cfg = clap_config("laion-clap")
    wave = np.full(1000, 100, dtype=np.int16)
    clip = prepare_clip(wave, cfg)
    assert clip.shape == (480_000,)  # 10 s at 48 kHz
    assert (clip[: 480_000 // 1000 * 1000] != 0).all()  # 480 whole copies fill it exactly
    assert prepare_clip(wave, clap_config("msclap-2023")).shape == (308_700,)  # 7 s, 44.1 kHz


def test_clip_windows_cover_the_wave_in_order():
    wave = np.arange(23)
    windows = clip_windows(wave, 10)
    assert [w.tolist() for w in windows] == [list(range(10)), list(range(10, 20)), [20, 21, 22]]
    assert [len(w) for w in clip_windows(np.arange(20), 10)] == [10, 10]
    assert [len(w) for w in clip_windows(np.zeros(0), 10)] == [0]
