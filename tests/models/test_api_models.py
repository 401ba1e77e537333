"""The models part of the public API: embed, model_info, weights_info, list_configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xsearch.api as xs
from xsearch.errors import CheckpointError, MediaError, UsageError, WeightsNotFound
from xsearch.models.fake import FakeEncoder, fake_spec
from xsearch.models.weights import sidecar_path
from xsearch.samples import audio_samples, image_samples, write_video, write_wav

TINY = {"weights": "random", "config": "audioclip-tiny", "device": "cpu"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    waves = audio_samples(seconds=1.0)
    write_wav(folder / "siren.wav", waves["siren.wav"])
    write_wav(folder / "tone.wav", waves["tone_440hz.wav"])
    image_samples((96, 64))["red_circle.png"].save(folder / "circle.png")
    write_video(folder / "clip.mp4", seconds=1.0)
    (folder / "broken.wav").write_bytes(b"RIFF not really")
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: errors must come before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("xsearch.models.load_encoder", refuse)


def test_embed_texts_gives_unit_rows_in_order():
    vectors = xs.embed("text", ["a dog", "rain", "a dog"], **TINY)
    assert vectors.shape == (3, 1024) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])


def test_embed_files_and_a_videos_frame_and_track(media):
    images = xs.embed("image", [media / "circle.png", str(media / "clip.mp4")], **TINY)
    sounds = xs.embed("audio", [media / "siren.wav", media / "clip.mp4"], **TINY)
    assert images.shape == sounds.shape == (2, 1024)
    assert not np.allclose(images[0], images[1]) and not np.allclose(sounds[0], sounds[1])


def test_embed_nothing_is_an_empty_array_without_loading(no_model_load):
    assert xs.embed("audio", [], **TINY).shape == (0, 1024)


def test_every_bad_file_is_named_in_one_error_before_the_model_loads(media, no_model_load):
    files = [media / "broken.wav", media / "siren.wav", media / "nothing.wav", media / "empty.png"]
    with pytest.raises(MediaError) as info:
        xs.embed("audio", files, **TINY)
    message = str(info.value)
    assert "\n" not in message and message.startswith("3 of 4 inputs cannot be used")
    for name in ("broken.wav", "nothing.wav", "empty.png"):
        assert name in message
    assert "siren.wav" not in message


def test_many_bad_files_are_counted_past_the_first_few(media, no_model_load):
    files = [media / f"missing{i}.wav" for i in range(15)]
    with pytest.raises(MediaError) as info:
        xs.embed("audio", files, **TINY)
    message = str(info.value)
    assert message.startswith("15 of 15") and "missing10.wav" in message
    assert "missing11.wav" not in message and "(4 more)" in message


def test_one_bad_file_is_its_own_message(media):
    with pytest.raises(MediaError) as info:
        xs.embed("image", [media / "broken.wav"], **TINY)
    assert "broken.wav" in str(info.value) and "inputs cannot be used" not in str(info.value)


def test_unknown_modality_is_a_usage_error_before_anything(no_model_load):
    with pytest.raises(UsageError, match="unknown modality 'smell'"):
        xs.embed("smell", ["x"])  # no weights anywhere: the modality is checked first


def test_a_modality_the_model_lacks_is_a_usage_error(media, monkeypatch, no_model_load):
    spec = fake_spec(512, ("audio", "text"))
    monkeypatch.setattr("xsearch.api.models._spec_before_loading", lambda *a: spec)
    with pytest.raises(UsageError) as info:
        xs.embed("image", [media / "circle.png"], **TINY)
    assert str(info.value) == "model fake-512-audio-text embeds audio, text, not image"


def test_audio_is_decoded_at_the_encoders_own_rate(media, monkeypatch):
    spec = fake_spec(512, ("audio", "text"), sample_rate=16_000)
    rates = []

    def load_audio(path, sample_rate=44_100, **kwargs):
        rates.append(sample_rate)
        return np.zeros(sample_rate, dtype=np.float32)

    monkeypatch.setattr("xsearch.api.models._spec_before_loading", lambda *a: spec)
    monkeypatch.setattr("xsearch.media.load_audio", load_audio)
    monkeypatch.setattr("xsearch.models.load_encoder", lambda *a, **k: FakeEncoder(spec))
    vectors = xs.embed("audio", [media / "siren.wav", media / "tone.wav"], **TINY)
    assert rates == [16_000, 16_000] and vectors.shape == (2, 512)


def test_a_checkpoint_that_does_not_fit_is_reported_before_decoding(
    tiny_checkpoint, media, no_model_load
):
    with pytest.raises(CheckpointError, match="'audioclip' architecture"):
        xs.embed("audio", [media / "broken.wav"], weights=str(tiny_checkpoint), config="audioclip")


def test_model_info_of_a_checkpoint(tiny_checkpoint, tmp_path):
    copy = tmp_path / "tiny.pt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    info = xs.model_info(str(copy), device="cpu")
    assert isinstance(info, xs.ModelInfo)
    assert (info.weights, info.source, info.sha256) == (str(copy), "weights", None)
    assert (info.config, info.family, info.embed_dim) == ("audioclip-tiny", "audioclip", 1024)
    assert info.modalities == ("image", "audio", "text") and info.device == "cpu"
    import torch

    state = torch.load(copy, weights_only=True)
    assert info.parameters == sum(t.numel() for t in state.values())
    sidecar_path(copy).write_text("ab" * 32 + "  tiny.pt\n")
    assert xs.model_info(str(copy), device="cpu").sha256 == "ab" * 32
    assert list(info.as_dict()) == [
        "weights", "source", "sha256", "config", "family", "parameters", "embed_dim",
        "modalities", "device",
    ]  # fmt: skip


def test_model_info_of_random_weights_counts_the_official_parameters():
    info = xs.model_info("random", device="cpu")
    assert (info.weights, info.source, info.config) == ("random", "random", "audioclip")
    assert info.parameters == 134_246_925


def test_model_info_without_weights_says_how_to_get_them():
    with pytest.raises(WeightsNotFound, match="xsearch model fetch"):
        xs.model_info()


def test_weights_info_is_cheap_and_reads_the_sidecar(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(b"not loaded")
    sidecar_path(path).write_text("cd" * 32 + "  w.pt\n")
    monkeypatch.setenv("XSEARCH_WEIGHTS", str(path))
    info = xs.weights_info()
    assert (info.path, info.source, info.sha256, info.is_random) == (
        path, "XSEARCH_WEIGHTS", "cd" * 32, False,
    )  # fmt: skip
    assert xs.weights_info("random").is_random


def test_list_configs():
    assert {"audioclip", "audioclip-tiny"} <= set(xs.list_configs())
    assert xs.list_configs() == sorted(xs.list_configs())
