"""The tower cache: towers derived once, mapped without a copy, loaded only when needed, and
derived again when a kept file is missing or damaged; checkpoint digests remembered."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from xsearch.media.image import crop_square, model_input
from xsearch.models import digests, load_encoder, preprocess, sources
from xsearch.models.encoder import AudioCLIPEncoder
from xsearch.models.tower_cache import read_tower, source_dir
from xsearch.models.weights import WeightsChoice

TINY = {"config": "audioclip-tiny", "device": "cpu", "batch_size": 4}


def _inputs():
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))]
    waves = [(rng.standard_normal(22050) * 3000).astype(np.float32)]
    return ["a dog barking", "rain"], images, waves


def _vectors(encoder):
    texts, images, waves = _inputs()
    return [encoder.embed("text", texts), encoder.embed("image", images),
            encoder.embed("audio", waves)]  # fmt: skip


def test_cached_towers_equal_the_model_they_come_from(tiny_checkpoint):
    from xsearch.models.checkpoint import load_checkpoint

    direct = AudioCLIPEncoder(load_checkpoint(tiny_checkpoint), "cpu", batch_size=4)
    first = load_encoder(str(tiny_checkpoint), **TINY)  # derives and keeps the towers
    again = load_encoder(str(tiny_checkpoint), **TINY)  # maps them
    for a, b, c in zip(_vectors(direct), _vectors(first), _vectors(again)):
        assert np.abs(a - b).max() < 1e-6 and np.array_equal(b, c)


def test_only_the_towers_used_are_loaded(tiny_checkpoint):
    encoder = load_encoder(str(tiny_checkpoint), **TINY)
    assert encoder.loaded() == ()
    encoder.embed("text", ["a dog"])
    assert encoder.loaded() == ("text",)
    encoder.embed("audio", [np.zeros(4410, np.float32)])
    assert set(encoder.loaded()) == {"text", "audio"}


def test_kept_towers_load_without_the_checkpoint(tiny_checkpoint, monkeypatch):
    load_encoder(str(tiny_checkpoint), **TINY).embed("text", ["warm"])

    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was read")

    monkeypatch.setattr("xsearch.models.checkpoint.load_checkpoint", refuse)
    monkeypatch.setattr("xsearch.models.checkpoint.checkpoint_config", refuse)
    # no config given: the one found when the towers were derived is remembered
    encoder = load_encoder(str(tiny_checkpoint), device="cpu")
    assert encoder.spec.config == "audioclip-tiny"
    encoder.embed("image", _inputs()[1])
    encoder.embed("audio", _inputs()[2])


def test_mapped_arrays_are_not_copied(tiny_checkpoint):
    load_encoder(str(tiny_checkpoint), **TINY).embed("text", ["warm"])
    source = sources.checkpoint_source(tiny_checkpoint, "audioclip-tiny")
    tower = source.tower("image")
    key = next(k for k in tower.nhwc)
    array = tower.arrays[key]
    assert isinstance(array.base, np.memmap) or isinstance(array, np.memmap)
    from xsearch.models.towers import _tensors

    tensor = _tensors(tower, "")[key]
    assert tensor.data_ptr() == array.ctypes.data  # the same memory
    assert tensor.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "index"])
def test_damaged_towers_are_derived_again(tiny_checkpoint, damage):
    reference = _vectors(load_encoder(str(tiny_checkpoint), **TINY))
    sha = digests.checkpoint_sha256(tiny_checkpoint)
    folder = source_dir("audioclip-tiny", sha)
    path = folder / "audio.safetensors"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "delete":
        path.unlink()
    else:
        (folder / "index.json").write_text("{not json")
    assert read_tower(folder, "audio") is None
    derived = _vectors(load_encoder(str(tiny_checkpoint), **TINY))
    assert all(np.array_equal(a, b) for a, b in zip(reference, derived))
    assert read_tower(folder, "audio") is not None  # kept again


def test_random_weights_are_kept_per_config_and_seed():
    a = load_encoder("random", seed=0, **TINY).embed("text", ["x"])
    b = load_encoder("random", seed=0, **TINY).embed("text", ["x"])
    c = load_encoder("random", seed=1, **TINY).embed("text", ["x"])
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert source_dir("audioclip-tiny", "random-seed0").is_dir()


def test_checkpoint_digest_is_hashed_once_per_file_version(tmp_path, monkeypatch):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"PK\x03\x04" + os.urandom(1000))
    calls = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda p: calls.append(p) or real(p))
    first = digests.checkpoint_sha256(path)
    assert digests.checkpoint_sha256(path) == first and len(calls) == 1
    path.write_bytes(b"PK\x03\x04" + os.urandom(1000))  # new content, new mtime
    os.utime(path, ns=(1, 1))
    assert digests.checkpoint_sha256(path) != first and len(calls) == 2


def test_a_file_that_is_no_checkpoint_fails_before_torch_work(tmp_path):
    from xsearch.errors import CheckpointError

    path = tmp_path / "photo.pt"
    path.write_bytes(b"\xff\xd8\xff" + bytes(100))
    with pytest.raises(CheckpointError, match="JPEG"):
        sources.tower_source(WeightsChoice(path, "weights"))


def test_model_input_is_torchvision_to_the_bit():
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8))
    ours = model_input(crop_square(picture, 32), preprocess.CLIP_MEAN, preprocess.CLIP_STD)
    theirs = preprocess.image_tensor([picture], 32)[0].numpy()
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs)


def test_prepare_weights_keeps_every_tower_once(tiny_checkpoint, monkeypatch):
    from pathlib import Path

    from xsearch.api import prepare_weights

    folder = Path(prepare_weights(tiny_checkpoint))
    assert {p.name for p in folder.glob("*.safetensors")} == {
        "text.safetensors", "image.safetensors", "audio.safetensors"
    }  # fmt: skip

    def refuse(*args, **kwargs):
        raise AssertionError("derived again")

    monkeypatch.setattr("xsearch.models.checkpoint.load_checkpoint", refuse)
    assert prepare_weights(tiny_checkpoint) == str(folder)
