"""Media decoding: waveforms, images and video frames, checked against media made on the fly."""

from __future__ import annotations

import wave as wavefile

import numpy as np
import pytest
from PIL import Image

from tests.helpers.media_factory import (
    MARKER,
    frame_index,
    sine,
    write_audio,
    write_video,
    write_wav,
)
from xsearch.errors import MediaError
from xsearch.media import (
    kind_of,
    load_audio,
    load_image,
    probe_kind,
    video_central_frame,
    video_frame,
)

RATE = 44100


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


# A 0.5-amplitude sine in int16 scale has this RMS.
SINE_RMS = 0.5 * 32768 / np.sqrt(2)


# --- kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a/b/song.MP3", "audio"),
        ("x.opus", "audio"),
        ("x.aif", "audio"),
        ("photo.JPeg", "image"),
        ("x.tiff", "image"),
        ("clip.mkv", "video"),
        ("clip.webm", "video"),
        ("notes.txt", "text"),
        ("q.json", "text"),
        ("x.aifc", "audio"),
        ("x.AU", "audio"),
        ("x.snd", "audio"),
        ("x.caf", "audio"),
        ("x.mka", "audio"),
        ("x.wma", "audio"),
        ("clip.m4v", "video"),
        ("clip.3gp", "video"),
        ("clip.ts", "video"),
        ("clip.MTS", "video"),
        ("scan.pgm", "image"),
        ("logo.svg", None),
        ("archive.zip", None),
        ("README", None),
        ("dir.mp4/file", None),
    ],
)
def test_kind_of(name, kind):
    assert kind_of(name) == kind


# --- audio ---------------------------------------------------------------------------------


def test_wav_int16_decodes_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    samples = rng.integers(-32768, 32768, RATE, dtype=np.int16)
    samples[:2] = (-32768, 32767)
    path = tmp_path / "noise.wav"
    write_wav(path, samples, RATE)

    wave = load_audio(path)

    assert wave.dtype == np.float32
    assert wave.ndim == 1
    np.testing.assert_array_equal(wave, samples.astype(np.float32))


def test_stereo_is_downmixed_to_channel_mean(tmp_path):
    rng = np.random.default_rng(1)
    left = rng.integers(-16000, 16000, RATE, dtype=np.int16)
    right = rng.integers(-16000, 16000, RATE, dtype=np.int16)
    write_wav(tmp_path / "same.wav", np.stack([left, left], axis=1), RATE)
    write_wav(tmp_path / "lr.wav", np.stack([left, right], axis=1), RATE)
    write_wav(tmp_path / "left.wav", np.stack([left, np.zeros_like(left)], axis=1), RATE)

    # Identical channels come out unchanged: gain 1, not FFmpeg's unnormalised 1.414.
    np.testing.assert_allclose(load_audio(tmp_path / "same.wav"), left, atol=0.01)
    mean = (left.astype(np.float64) + right) / 2
    np.testing.assert_allclose(load_audio(tmp_path / "lr.wav"), mean, atol=0.01)
    one_side = load_audio(tmp_path / "left.wav")
    gain = np.dot(one_side, left) / np.dot(left.astype(np.float64), left)
    assert gain == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("resampler", ["swr", "soxr_hq"])
def test_the_first_channel_when_the_model_takes_it(tmp_path, resampler):
    """channels="first" (CAV-MAE's loader): the left channel as it is, at the file's rate
    or resampled; a mono file is itself either way."""
    rng = np.random.default_rng(2)
    left = rng.integers(-16000, 16000, RATE, dtype=np.int16)
    right = rng.integers(-16000, 16000, RATE, dtype=np.int16)
    write_wav(tmp_path / "lr.wav", np.stack([left, right], axis=1), RATE)
    write_wav(tmp_path / "left.wav", left, RATE)
    first = load_audio(tmp_path / "lr.wav", RATE, resampler=resampler, channels="first")
    np.testing.assert_allclose(first, left, atol=0.01)
    half = load_audio(tmp_path / "lr.wav", RATE // 2, resampler=resampler, channels="first")
    alone = load_audio(tmp_path / "left.wav", RATE // 2, resampler=resampler, channels="first")
    np.testing.assert_allclose(half, alone, atol=0.5)


@pytest.mark.parametrize("source_rate", [16000, 48000])
def test_resampled_to_44k_keeps_frequency(tmp_path, source_rate):
    path = tmp_path / f"tone{source_rate}.wav"
    write_wav(path, np.round(sine(1000, 1.0, source_rate) * 32767).astype(np.int16), source_rate)

    wave = load_audio(path)

    assert abs(len(wave) - RATE) <= 0.01 * RATE
    assert peak_hz(wave, RATE) == pytest.approx(1000, abs=2)
    assert rms(wave[1000:-1000]) == pytest.approx(SINE_RMS, rel=0.02)


def test_sample_rate_argument(tmp_path):
    path = tmp_path / "tone.wav"
    write_wav(path, np.round(sine(440, 1.0, RATE) * 32767).astype(np.int16), RATE)

    wave = load_audio(path, sample_rate=16000)

    assert abs(len(wave) - 16000) <= 160
    assert peak_hz(wave, 16000) == pytest.approx(440, abs=2)


@pytest.mark.parametrize(
    ("filename", "codec", "channels", "stream_rate"),
    [
        ("tone.flac", "flac", 1, None),
        ("tone.mp3", "libmp3lame", 2, None),
        ("tone.ogg", "vorbis", 2, None),  # FFmpeg's Vorbis encoder only does stereo
        ("tone.opus", "libopus", 1, 48000),
        ("tone.m4a", "aac", 1, None),
    ],
)
def test_compressed_audio_decodes(tmp_path, filename, codec, channels, stream_rate):
    seconds = 1.0
    tone = sine(440, seconds, RATE)
    if channels == 2:
        tone = np.stack([tone, tone], axis=1)
    path = tmp_path / filename
    write_audio(path, tone, RATE, codec, stream_rate=stream_rate)

    wave = load_audio(path)

    # Encoder delay is trimmed by every one of these; AAC keeps its padding to whole frames
    # of 1024 samples, so 1 s comes back as 45056 samples.
    assert abs(len(wave) - seconds * RATE) <= 2048
    assert peak_hz(wave, RATE) == pytest.approx(440, abs=2)
    # Lossy coders move the level a little (LAME at its default 64 kb/s: -5%).
    assert rms(wave[2048:-2048]) == pytest.approx(SINE_RMS, rel=0.1)


def test_audio_track_of_video(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 20, fps=10, audio_freq=660)

    wave = load_audio(path)

    assert abs(len(wave) - 2 * RATE) <= 2048
    assert peak_hz(wave, RATE) == pytest.approx(660, abs=2)
    assert rms(wave[2048:-2048]) == pytest.approx(SINE_RMS, rel=0.05)


def test_max_seconds_refuses_long_audio(tmp_path):
    path = tmp_path / "long.wav"
    write_wav(path, np.zeros(2 * RATE, dtype=np.int16), RATE)

    assert len(load_audio(path, max_seconds=2.5)) == 2 * RATE
    assert len(load_audio(path, max_seconds=None)) == 2 * RATE
    with pytest.raises(MediaError, match=r"long\.wav: audio is longer than the 1\.5 s limit"):
        load_audio(path, max_seconds=1.5)


def test_faststart_mp4_cut_short_decodes_what_is_there(tmp_path):
    # With the index at the front, a partial download is still playable up to where it stops;
    # like ffmpeg, keep what decodes rather than refusing the file.
    whole = tmp_path / "whole.mp4"
    write_video(whole, 30, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    wave = load_audio(cut)

    assert 0.2 * 3 * RATE < len(wave) < 0.9 * 3 * RATE


# --- video ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "n_frames", "kwargs"),
    [
        # Keyframes every 4 frames and B-frames: seek back, then decode forward to the target.
        ("odd.mp4", 31, {"gop": 4}),
        ("even.mp4", 30, {"gop": 4}),
        ("mpeg4.mov", 25, {"codec": "mpeg4", "gop": 6}),
        ("clip.mkv", 21, {}),
        # MPEG-TS starts at 0.2 s and its seeks land on the keyframe *after* the target: the
        # long one needs the seek backoff, the short one decoding from the start.
        ("clip.ts", 41, {"format": "mpegts", "gop": 10}),
        ("short.ts", 21, {"format": "mpegts", "gop": 10}),
        # Written through a pipe: no duration anywhere, so frames are counted.
        ("piped.mkv", 23, {"format": "matroska", "seekable": False}),
    ],
)
def test_video_central_frame(tmp_path, filename, n_frames, kwargs):
    fps = 10
    path = tmp_path / filename
    write_video(path, n_frames, fps=fps, **kwargs)

    image, seconds = video_central_frame(path)

    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert frame_index(np.asarray(image)) == n_frames // 2
    assert seconds == pytest.approx((n_frames // 2) / fps, abs=1e-6)
    assert abs(seconds - n_frames / fps / 2) <= 1 / fps


@pytest.mark.parametrize(
    ("filename", "kwargs"),
    [
        ("odd.mp4", {"gop": 4}),
        ("mpeg4.mov", {"codec": "mpeg4", "gop": 6}),
        # MPEG-TS starts at 0.2 s and its seeks land after the target: the seek backs off.
        ("clip.ts", {"format": "mpegts", "gop": 10}),
        ("piped.mkv", {"format": "matroska", "seekable": False}),
    ],
)
def test_video_frame_at_a_time(tmp_path, filename, kwargs):
    """The frame on screen at a time, counted as the central frame's time is: thumbnails
    show the frame that was embedded."""
    path = tmp_path / filename
    write_video(path, 41, fps=10, **kwargs)
    for seconds, index in [(0.0, 0), (1.0, 10), (1.25, 12), (3.5, 35), (4.0, 40), (99.0, 40)]:
        assert frame_index(np.asarray(video_frame(path, seconds))) == index, seconds
    middle, seconds = video_central_frame(path)
    again = video_frame(path, seconds)
    assert np.array_equal(np.asarray(again), np.asarray(middle))
    assert np.array_equal(np.asarray(video_frame(path, None)), np.asarray(middle))


def test_video_frame_is_rotated(tmp_path):
    path = tmp_path / "portrait.mp4"
    write_video(path, 5, size=(64, 48), rotation=90, with_audio=False)
    assert video_frame(path, 0.1).size == (48, 64)


def test_probe_kind_reads_the_content(tmp_path):
    write_wav(tmp_path / "a", (sine(440, 0.5, RATE) * 32767).astype(np.int16), RATE)
    write_video(tmp_path / "b", 5, format="mp4")
    Image.new("RGB", (8, 8)).save(tmp_path / "c", format="png")
    (tmp_path / "d").write_bytes(b"plain text, no media")
    kinds = [probe_kind(tmp_path / n) for n in "abcd"]
    assert kinds == ["audio", "video", "image", None]
    assert probe_kind(tmp_path / "missing") is None


def test_video_central_frame_raw_stream_without_timestamps(tmp_path):
    path = tmp_path / "raw.h264"
    write_video(path, 21, fps=10, format="h264", with_audio=False)

    image, seconds = video_central_frame(path)

    assert frame_index(np.asarray(image)) == 10
    assert seconds == pytest.approx(1.0)  # frame 10 at the stream's 10 fps


def test_load_image_of_video_is_central_frame(tmp_path):
    path = tmp_path / "clip.MP4"
    write_video(path, 15, with_audio=False)

    image = load_image(path)

    assert image.mode == "RGB"
    assert frame_index(np.asarray(image)) == 7


def test_video_display_rotation_is_applied(tmp_path):
    path = tmp_path / "portrait.mp4"
    write_video(path, 5, size=(64, 48), rotation=90, with_audio=False)

    image, _ = video_central_frame(path)

    # 90 degrees counterclockwise, as ffmpeg's autorotate shows it: the top-left marker
    # ends up bottom-left.
    rgb = np.asarray(image)
    assert image.size == (48, 64)
    assert rgb[-MARKER // 2, MARKER // 2].min() > 230
    assert rgb[MARKER // 2, MARKER // 2].max() < 230


# --- images --------------------------------------------------------------------------------


def test_png_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (200, 30, 40, 255)  # opaque left half
    rgba[:, 10:] = (0, 0, 0, 0)  # transparent black right half
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.size == (20, 10)
    rgb = np.asarray(image)
    assert tuple(rgb[5, 2]) == (200, 30, 40)
    assert tuple(rgb[5, 15]) == (255, 255, 255)


def test_greyscale_png(tmp_path):
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (7, 1))
    path = tmp_path / "grey.png"
    Image.fromarray(grey, mode="L").save(path)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.size == (25, 7)
    np.testing.assert_array_equal(np.asarray(image), np.repeat(grey[:, :, None], 3, axis=2))


def test_16bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(grey).save(path)

    image = load_image(path)

    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image)[0, :, 0], [0, 64, 128, 255])


def test_palette_png_with_transparency(tmp_path):
    indices = np.array([[0, 1, 2, 1]], dtype=np.uint8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    path = tmp_path / "palette.png"
    palette.save(path, transparency=2)

    image = load_image(path)

    assert image.mode == "RGB"
    rgb = [tuple(int(v) for v in px) for px in np.asarray(image)[0]]
    assert rgb == [(255, 0, 0), (0, 255, 0), (255, 255, 255), (0, 255, 0)]


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 255, 255), (0, 0, 8, 8))  # marker, top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored image must be turned 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)

    image = load_image(path)

    assert image.size == (20, 40)
    rgb = np.asarray(image)
    assert rgb[3, -4].min() > 200  # marker now top-right
    assert rgb[3, 3].min() < 100


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # Pillow itself only warns up to 600
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(MediaError, match=r"big\.png: image too large \(20x20 pixels\)"),
    ):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow raises above 200
    with pytest.raises(MediaError, match=r"big\.png: image too large, refused"):
        load_image(path)


# --- errors --------------------------------------------------------------------------------


def _random_file(path):
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _truncated_mp4(path):
    whole = path.with_name("whole.mp4")
    write_video(whole, 20)
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def _video_without_audio(path):
    write_video(path, 5, with_audio=False)
    return path


def _empty_wav(path):
    with wavefile.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
    return path


@pytest.mark.parametrize(
    ("load", "filename", "make", "reason"),
    [
        (load_audio, "missing.wav", None, "cannot open: No such file or directory"),
        (load_audio, "noise.wav", _random_file, "cannot open: Invalid data found"),
        (load_audio, "noise.mp4", _random_file, "cannot open: Invalid data found"),
        (load_audio, "cut.mp4", _truncated_mp4, "cannot open: Invalid data found"),
        (load_audio, "silent.mp4", _video_without_audio, "no audio track"),
        (load_audio, "empty.wav", _empty_wav, "audio track is empty"),
        (load_image, "missing.jpg", None, "cannot read image: No such file or directory"),
        (load_image, "noise.jpg", _random_file, "cannot read image: not an image format"),
        (load_image, "noise.mp4", _random_file, "cannot open: Invalid data found"),
        (load_image, "cut.mp4", _truncated_mp4, "cannot open: Invalid data found"),
        (video_central_frame, "empty.wav", _empty_wav, "no video track"),
    ],
)
def test_errors_name_the_file_on_one_line(tmp_path, load, filename, make, reason):
    path = tmp_path / filename
    if make is not None:
        make(path)

    with pytest.raises(MediaError) as caught:
        load(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert reason in message
    assert "\n" not in message
