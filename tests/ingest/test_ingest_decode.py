"""decode_file: audio windows, the video frame plus its audio, and CLIP's resize/crop done early."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.media_factory import frame_index, sine, write_video, write_wav
from xsearch.errors import MediaError
from xsearch.ingest.decode import Decoded, crop_square, cut_windows, decode_file
from xsearch.media import load_image, video_central_frame
from xsearch.models.preprocess import image_tensor
from xsearch.samples import image_samples

RATE = 44100


def spans(windows) -> list[tuple[float, float]]:
    return [(round(w.start, 3), round(w.end, 3)) for w in windows]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (25.0, [(0, 10), (10, 20), (20, 25)]),
        (20.5, [(0, 10), (10, 20.5)]),  # a 0.5 s tail joins the window before it
        (21.0, [(0, 10), (10, 20), (20, 21)]),  # a 1 s tail is kept
        (20.0, [(0, 10), (10, 20)]),
        (10.5, [(0, 10.5)]),
        (10.0, [(0, 10)]),
        (3.0, [(0, 3)]),
        (0.2, [(0, 0.2)]),  # shorter than the minimum tail, but all there is
    ],
)
def test_cut_windows(seconds, expected):
    wave = np.arange(round(seconds * RATE), dtype=np.float32)
    windows = cut_windows(wave, RATE, 10.0)
    assert spans(windows) == expected
    # Contiguous, covering, and the samples of their span.
    assert np.array_equal(np.concatenate([w.wave for w in windows]), wave)
    for w in windows:
        assert w.wave[0] == round(w.start * RATE)
        assert len(w.wave) == round((w.end - w.start) * RATE)
        assert w.wave.dtype == np.float32


def test_cut_windows_other_lengths():
    wave = np.zeros(round(7.5 * RATE), np.float32)
    assert spans(cut_windows(wave, RATE, 2.5)) == [(0, 2.5), (2.5, 5), (5, 7.5)]
    with pytest.raises(ValueError):
        cut_windows(wave, RATE, 0)


def test_fixed_clip_windows_keep_a_short_tail_of_their_own():
    wave = np.zeros(round(20.5 * RATE), np.float32)
    assert spans(cut_windows(wave, RATE, 10.0)) == [(0, 10), (10, 20.5)]  # merged
    assert spans(cut_windows(wave, RATE, 10.0, merge_tail=False)) == [(0, 10), (10, 20), (20, 20.5)]


def test_audio_file(tmp_path):
    path = tmp_path / "tone.wav"
    write_wav(path, sine(440, 25.0, RATE) * 32767, RATE)
    decoded = decode_file(path)
    assert decoded.kind == "audio"
    assert decoded.path == str(path)
    assert decoded.duration == pytest.approx(25.0)
    assert decoded.image is None and decoded.frame_time is None
    assert spans(decoded.audio) == [(0, 10), (10, 20), (20, 25)]
    # int16 scale, as the audio tower takes it
    assert np.abs(decoded.audio[0].wave).max() == pytest.approx(0.5 * 32767, abs=2)
    start, end, wave = decoded.audio[1]  # windows unpack as tuples
    assert (start, end, wave.shape) == (10.0, 20.0, (10 * RATE,))


def test_video_gives_frame_and_audio(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 24, fps=2, size=(64, 48))  # 12 s, with a sine track
    decoded = decode_file(path)
    assert decoded.kind == "video"
    assert decoded.image.shape == (224, 224, 3) and decoded.image.dtype == np.uint8
    assert decoded.frame_time == pytest.approx(6.0)
    assert frame_index(decoded.image) == 12
    assert len(decoded.audio) == 2 and spans(decoded.audio)[0] == (0, 10)
    assert decoded.audio[1].end == pytest.approx(12.0, abs=0.1)
    assert decoded.duration == pytest.approx(decoded.audio[-1].end)


def test_silent_video_gives_frame_only(tmp_path):
    path = tmp_path / "silent.mp4"
    write_video(path, 20, with_audio=False)
    decoded = decode_file(path)
    assert decoded.image is not None and frame_index(decoded.image) == 10
    assert decoded.audio == []
    assert decoded.duration == pytest.approx(2.0)


def test_video_frame_matches_clip_transform(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 10, size=(96, 64))
    decoded = decode_file(path, image_size=224)
    frame, _ = video_central_frame(path)
    assert torch.equal(
        image_tensor([Image.fromarray(decoded.image)], 224), image_tensor([frame], 224)
    )


def _photo(width: int, height: int) -> Image.Image:
    """Detailed content, so that any difference in resampling or crop offset shows."""
    rng = np.random.default_rng(width * 10007 + height)
    base = np.asarray(image_samples((width, height))["red_circle.png"], dtype=np.int16)
    noise = rng.integers(-40, 40, size=base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    "size",
    [(320, 240), (240, 320), (300, 300), (224, 224), (225, 224), (100, 60), (333, 517), (901, 225)],
)
@pytest.mark.parametrize("image_size", [224, 64])
def test_crop_square_equals_clip_transform(size, image_size):
    original = _photo(*size)
    pixels = crop_square(original, image_size)
    assert pixels.shape == (image_size, image_size, 3) and pixels.dtype == np.uint8
    # Resize and crop of an image already at the model's size are no-ops, so the tensors are
    # not merely close but equal.
    assert torch.equal(
        image_tensor([Image.fromarray(pixels)], image_size),
        image_tensor([original], image_size),
    )


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg"])
def test_image_file(tmp_path, name):
    path = tmp_path / name
    _photo(320, 240).save(path)
    decoded = decode_file(path)
    assert decoded.kind == "image" and decoded.audio == [] and decoded.duration is None
    assert torch.equal(
        image_tensor([Image.fromarray(decoded.image)], 224), image_tensor([load_image(path)], 224)
    )


def test_decoded_crosses_a_worker_pipe(tmp_path):
    """Workers send results over a multiprocessing connection, our own trusted channel."""
    from multiprocessing import Pipe

    path = tmp_path / "tone.wav"
    write_wav(path, sine(440, 3.0, RATE) * 32767, RATE)
    decoded = decode_file(path)
    import threading

    sender, receiver = Pipe()
    # the send blocks once the pipe's buffer is full, so it needs its own thread
    thread = threading.Thread(target=sender.send, args=(decoded,))
    thread.start()
    again = receiver.recv()
    thread.join()
    assert isinstance(again, Decoded)
    assert spans(again.audio) == [(0, 3)]
    assert np.array_equal(again.audio[0].wave, decoded.audio[0].wave)


@pytest.mark.parametrize("name", ["notes.txt", "data.bin", "empty.wav", "missing.png"])
def test_unusable_files_raise_media_error(tmp_path, name):
    path = tmp_path / name
    if name != "missing.png":
        path.write_bytes(b"")
    with pytest.raises(MediaError) as info:
        decode_file(path)
    assert str(info.value).startswith(str(path))


def test_only_the_modalities_a_model_embeds_are_decoded(tmp_path):
    """None for the image size or sample rate: the model does not embed that modality, so it
    is not decoded (a video gives its sound only, or its frame only)."""
    video = tmp_path / "walk.mp4"
    write_video(video, 20, fps=10)  # 2 s, with a sine track
    sound = decode_file(video, image_size=None, sample_rate=16_000)
    assert sound.kind == "video" and sound.image is None and sound.frame_time is None
    [window] = sound.audio  # AAC pads a little: about 2 s at the model's 16 kHz
    assert window.end == pytest.approx(2.0, abs=0.05)
    assert len(window.wave) == round(window.end * 16_000)
    picture = decode_file(video, image_size=48, sample_rate=None)
    assert picture.image.shape == (48, 48, 3) and picture.audio == []
    assert picture.duration == pytest.approx(2.0, abs=0.1)  # the video's own length

    photo = tmp_path / "photo.png"
    _photo(64, 48).save(photo)
    assert decode_file(photo, image_size=None).image is None
    tone = tmp_path / "tone.wav"
    write_wav(tone, sine(440, 1.0, RATE) * 32767, RATE)
    assert decode_file(tone, sample_rate=None).audio == []


def test_an_unlisted_extension_is_decoded_by_its_content(tmp_path):
    path = tmp_path / "take.1"
    write_wav(path, sine(440, 1.0, RATE) * 32767, RATE)
    assert decode_file(path, sample_rate=16_000).kind == "audio"
    picture = tmp_path / "scan.0001"
    _photo(64, 48).save(picture, format="png")
    assert decode_file(picture, image_size=32).image.shape == (32, 32, 3)
