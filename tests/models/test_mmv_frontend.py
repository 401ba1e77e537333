"""MMV's numpy log-mel frontend gives DMVR's `compute_audio_spectrogram` output.

`tests/data/golden_mmv_frontend.npz` holds TF's output (tensorflow-cpu 2.21.0 running
DMVR's processors.py from google-deepmind/dmvr 77cceda) for waveforms that `make_wave`
regenerates from a seed: only the seeds, lengths and a checksum are stored, not the waves.
Config "a" is DMVR's defaults; config "b" exercises the other switches (odd frame length,
|X|^2, pre-emphasis, peak normalisation, a mel range up to Nyquist). The file also holds
TF's mel matrices and Hann windows.

The log-mel differs from TF's by TF's float32 FFT rounding: about 2e-5 at most for config
"a", 3.4e-4 for config "b", whose |X|^2 after pre-emphasis spans 8 decades (there the numpy
result is the closer one to a float64 TF run: 1.7e-4 against TF float32's 3.7e-4).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xsearch.errors import UsageError
from xsearch.models import mmv_frontend
from xsearch.models.mmv_frontend import MmvAudioFrontend, hann_window, mel_weight_matrix

GOLDEN = Path(__file__).parent.parent / "data" / "golden_mmv_frontend.npz"
TOLERANCE = {"a": 5e-5, "b": 5e-4}  # max abs difference in log space

# The "audio.frontend" block of the MMV model config: DMVR's defaults, none confirmed for MMV.
FRONTEND_BLOCK = {
    "sample_rate": 48000,
    "frame_length": 2048,
    "frame_step": 1024,
    "fft_length": 2048,
    "mel_bins": 80,
    "lower_hz": 80.0,
    "upper_hz": 7600.0,
    "log_offset": 1e-6,
    "fft_output": "magnitude",
    "preemphasis": None,
    "normalize": False,
    "pad_end": True,
}

CONFIG_B = MmvAudioFrontend(
    sample_rate=16000,
    frame_length=401,
    frame_step=160,
    fft_length=401,
    mel_bins=40,
    lower_hz=125.0,
    upper_hz=8000.0,
    fft_output="magnitude_squared",
    preemphasis=0.97,
    normalize=True,
)


def make_wave(seed: int, length: int, sample_rate: int, silence: bool = False) -> np.ndarray:
    """Two seeded tones and a little noise, clipped to [-1, 1], float32 (the golden's recipe;
    RandomState's stream is frozen by numpy, so the waves come back the same)."""
    rs = np.random.RandomState(seed)
    t = np.arange(length, dtype=np.float64) / sample_rate
    f1, f2 = rs.uniform(100.0, 0.3 * sample_rate, 2)
    a1, a2 = rs.uniform(0.1, 0.4, 2)
    phase = rs.uniform(0.0, 2 * np.pi)
    noise = rs.uniform(-0.05, 0.05, length)
    wave = a1 * np.sin(2 * np.pi * f1 * t) + a2 * np.sin(2 * np.pi * f2 * t + phase) + noise
    if silence:
        wave[length // 3 : 2 * length // 3] = 0.0
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["meta"] = json.loads(str(arrays["meta"]))
    return arrays


def frontend_for(config: str) -> MmvAudioFrontend:
    return MmvAudioFrontend() if config == "a" else CONFIG_B


def cases(golden):
    for case in golden["meta"]["cases"]:
        frontend = frontend_for(case["config"])
        wave = make_wave(case["seed"], case["length"], frontend.sample_rate, case["silence"])
        yield case, frontend, wave, golden[f"logmel_{case['name']}"]


def test_waves_regenerate(golden):
    for case, _, wave, _ in cases(golden):
        assert wave.shape == (case["length"],)
        assert float(wave.astype(np.float64).sum()) == pytest.approx(case["sum"], rel=0, abs=1e-6)


def test_log_mel_matches_tensorflow(golden):
    worst = {}
    for case, frontend, wave, expected in cases(golden):
        got = frontend.log_mel(wave)
        assert got.dtype == np.float32
        assert got.shape == expected.shape, case["name"]
        diff = float(np.abs(got - expected).max())
        worst[case["name"]] = diff
        assert diff <= TOLERANCE[case["config"]], (case["name"], diff)
    print("max abs log-mel difference from TF:", worst)


def test_chunked_fft_matches(golden, monkeypatch):
    """Long waves are transformed in chunks of frames; a chunk boundary changes nothing."""
    monkeypatch.setattr(mmv_frontend, "_CHUNK_FRAMES", 7)
    for case, frontend, wave, expected in cases(golden):
        got = frontend.log_mel(wave)
        assert np.abs(got - expected).max() <= TOLERANCE[case["config"]], case["name"]


def test_mel_matrix_matches_tensorflow(golden):
    for frontend, key in ((MmvAudioFrontend(), "mel_matrix_a"), (CONFIG_B, "mel_matrix_b")):
        ours, theirs = frontend.mel_matrix(), golden[key]
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        # TF's float32 log (Eigen) and numpy's differ by an ulp now and then; the slope
        # division turns that into a few 1e-6. Which bins are in which band is identical.
        assert np.abs(ours - theirs).max() < 2e-5
        assert np.array_equal(ours > 0, theirs > 0)
        assert not ours[0].any()  # the DC bin is zeroed


def test_hann_window_matches_tensorflow(golden):
    # TF's "periodic" window divides by length - 1 for an odd length (401): a symmetric one.
    for length in (401, 2048):
        assert np.abs(hann_window(length) - golden[f"hann_{length}"]).max() <= 1.2e-7
    assert hann_window(1).tolist() == [1.0]


def test_frame_count_is_tensorflows():
    frontend = MmvAudioFrontend()
    # tf.signal.frame(pad_end=True): ceil(samples / step); counts TF gave for these lengths
    for samples, frames in ((0, 0), (1, 1), (1000, 1), (1024, 1), (1025, 2), (2048, 2), (3000, 3)):
        assert frontend.frame_count(samples) == frames
    assert frontend.frame_count(153600) == 150
    for samples in (1, 1000, 1025, 3000):
        frames = frontend.frame_count(samples)
        assert frontend.log_mel(np.zeros(samples, np.float32)).shape == (frames, 80)


def test_silence_is_the_log_offset():
    out = MmvAudioFrontend().log_mel(np.zeros(5000, np.float32))
    assert np.all(out == np.float32(np.log(1e-6)))


def test_empty_and_bad_shapes_are_refused():
    frontend = MmvAudioFrontend()
    with pytest.raises(ValueError, match="empty waveform"):
        frontend.log_mel(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono 1-D"):
        frontend.log_mel(np.zeros((2, 4800), np.float32))
    no_padding = MmvAudioFrontend(pad_end=False)
    assert no_padding.log_mel(np.ones(3072, np.float32)).shape == (2, 80)
    with pytest.raises(ValueError, match="fewer than one frame"):
        no_padding.log_mel(np.ones(100, np.float32))


def test_float64_input_is_read_as_float32(golden):
    _, frontend, wave, _ = next(c for c in cases(golden) if c[0]["name"] == "odd")
    assert np.array_equal(frontend.log_mel(wave.astype(np.float64)), frontend.log_mel(wave))


def test_mel_matrix_is_cached_and_read_only():
    first = mel_weight_matrix(80, 1025, 48000, 80.0, 7600.0)
    assert MmvAudioFrontend().mel_matrix() is first
    assert not first.flags.writeable
    assert mel_weight_matrix(80, 1025, 48000, 100.0, 7600.0) is not first


def test_from_config_reads_the_block():
    frontend = MmvAudioFrontend.from_config({"audio": {"frontend": FRONTEND_BLOCK}})
    assert frontend == MmvAudioFrontend()
    assert MmvAudioFrontend.from_config(FRONTEND_BLOCK) == frontend  # the block alone
    assert MmvAudioFrontend.from_config({}) == frontend  # an empty block: all defaults
    assert frontend.as_dict() == FRONTEND_BLOCK
    assert json.loads(json.dumps(frontend.as_dict())) == FRONTEND_BLOCK
    block = {"mel_bins": 40, "upper_hz": 8000}
    partial = MmvAudioFrontend.from_config({"audio": {"frontend": block}})
    assert (partial.mel_bins, partial.upper_hz, partial.sample_rate) == (40, 8000.0, 48000)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"family": "mmv"}, "no audio.frontend"),
        ({"audio": {}}, "no audio.frontend"),
        ({"audio": {"frontend": None}}, "JSON object"),
        ({"audio": {"frontend": []}}, "JSON object"),
        ({"audio": {"frontend": {"mel_bin": 80}}}, "unknown key"),
        ({"audio": {"frontend": {"upper_hz": 30000.0}}}, "sample_rate / 2"),
        ({"audio": {"frontend": {"frame_step": 0}}}, "frame_step"),
        ({"audio": {"frontend": {"fft_length": 1024}}}, "shorter than frame_length"),
        ({"audio": {"frontend": {"fft_output": "power"}}}, "fft_output"),
        ({"audio": {"frontend": {"log_offset": 0.0}}}, "log_offset"),
    ],
)
def test_from_config_refuses_bad_blocks(raw, message):
    with pytest.raises(UsageError, match=message) as caught:
        MmvAudioFrontend.from_config(raw)
    assert "\n" not in str(caught.value)
