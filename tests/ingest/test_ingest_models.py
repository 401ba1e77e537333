"""Ingest takes what it decodes from the encoder's spec: the sample rate and image size it
expects, and only the modalities it embeds (torch-free fake encoders of other shapes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.media_tree import make_media
from tests.helpers.store import check_invariants
from xsearch.errors import UsageError
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.models.fake import FakeEncoder, fake_spec
from xsearch.store.store import Store


class Recording(FakeEncoder):
    """A fake encoder that keeps every payload it is given, per modality."""

    def __init__(self, spec) -> None:
        super().__init__(spec, batch_size=4)
        self.payloads: dict[str, list] = {}

    def embed(self, modality, payloads):
        self.payloads.setdefault(modality, []).extend(payloads)
        return super().embed(modality, payloads)


def names(report) -> dict[str, str]:
    return {Path(p).name: reason for p, reason in report.failed}


def test_audio_text_model_decodes_no_pictures(tmp_path):
    root = make_media(tmp_path / "media")
    encoder = Recording(fake_spec(512, ("audio", "text"), sample_rate=16_000))
    report = ingest(find_files([root]), tmp_path / "idx", encoder, IngestOptions(workers=0))

    # the picture is refused without being decoded; the video gives its sound only
    assert set(encoder.payloads) == {"audio", "text"}
    assert names(report)["sky.png"] == "model fake-512-audio-text does not embed image"
    assert report.added == 4 and report.items["audio"] == 6
    store = Store.open(tmp_path / "idx")
    check_invariants(store)
    assert store.widths == {"audio": 512, "text": 512}
    assert set(store.items.column("modality").to_pylist()) == {"audio", "text"}
    walk = next(a for a in store.assets.to_pylist() if a["path"].endswith("walk.mp4"))
    assert walk["kind"] == "video" and walk["duration"] == pytest.approx(2.0, abs=0.1)
    # windows at the model's 16 kHz: storm.wav's first 10 s window has 160 000 samples
    assert max(len(w) for w in encoder.payloads["audio"]) == 160_000
    assert any(abs(len(w) - 16_000) < 1_000 for w in encoder.payloads["audio"])  # 1 s sounds


def test_audio_image_model_in_worker_processes(tmp_path):
    root = make_media(tmp_path / "media")
    spec = fake_spec(768, ("audio", "image"), sample_rate=16_000, image_size=48)
    encoder = Recording(spec)
    report = ingest(find_files([root]), tmp_path / "idx", encoder, IngestOptions(workers=1))

    assert report.added == 5 and set(report.items) == {"audio", "image"}
    split = report.embed_seconds_by_modality
    assert set(split) == {"audio", "image"} and all(s > 0 for s in split.values())
    assert sum(split.values()) <= report.embed_seconds + 1e-9
    assert report.as_dict()["items_per_second"] > 0
    # prepared by the workers: normalised float32 [3, size, size], as the model takes it
    assert {(str(image.dtype), image.shape) for image in encoder.payloads["image"]} == {
        ("float32", (3, 48, 48))
    }
    assert max(len(w) for w in encoder.payloads["audio"]) == 160_000
    store = Store.open(tmp_path / "idx")
    check_invariants(store)
    assert store.widths == {"audio": 768, "image": 768}
    # the video's sidecar still labels it; its text is not embedded by this model
    walk = next(a for a in store.assets.to_pylist() if a["path"].endswith("walk.mp4"))
    assert walk["labels"] == ["dog"]
    assert "text" not in store.items.column("modality").to_pylist()


def test_a_video_without_sound_for_an_audio_model_is_reported(tmp_path):
    from tests.helpers.media_factory import write_video

    root = tmp_path / "media"
    root.mkdir()
    write_video(root / "silent.mp4", 10, with_audio=False)
    encoder = FakeEncoder(fake_spec(64, ("audio", "text")))
    report = ingest(find_files([root]), tmp_path / "idx", encoder, IngestOptions(workers=0))
    assert names(report) == {
        "silent.mp4": "no sound to embed, and model fake-64-audio-text does not embed image"
    }


def test_vectors_match_the_model_width(tmp_path):
    root = make_media(tmp_path / "media")
    encoder = FakeEncoder(fake_spec(512, ("audio", "text")))
    ingest(find_files([root]), tmp_path / "idx", encoder, IngestOptions(workers=0))
    ids, vectors = Store.open(tmp_path / "idx").embeddings("audio")
    assert vectors.shape == (len(ids), 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_another_window_is_refused_and_the_index_untouched(tmp_path):
    root = make_media(tmp_path / "media")
    index = tmp_path / "idx"
    encoder = FakeEncoder(fake_spec(64, ("audio", "text")))
    first = ingest(find_files([root]), index, encoder, IngestOptions(workers=0))
    assert Store.open(index).recipe == {"window_seconds": 10.0, "frames": "central"}
    (root / "more.wav").write_bytes((root / "rain" / "drops.wav").read_bytes()[:-400])
    manifest = (index / "manifest.json").read_bytes()

    options = IngestOptions(workers=0, window_seconds=5.0)
    with pytest.raises(UsageError) as refused:
        ingest(find_files([root]), index, encoder, options)
    message = str(refused.value)
    assert "window_seconds" in message and "\n" not in message
    assert (index / "manifest.json").read_bytes() == manifest
    assert Store.open(index).generation == first.generation
    # the same window goes on
    again = ingest(find_files([root]), index, encoder, IngestOptions(workers=0))
    assert again.added == 1


def test_recipe_of_the_options():
    from xsearch.models.registry import spec_for

    spec = fake_spec(64, ("audio", "text"))
    assert IngestOptions(window_seconds=5).recipe(spec) == {
        "window_seconds": 5.0,
        "frames": "central",
    }
    assert IngestOptions().recipe(spec)["window_seconds"] == 10.0  # a model of any length
    clap = spec_for("laion-clap-tiny")  # 2 s clips: one window per clip
    assert IngestOptions().recipe(clap)["window_seconds"] == 2.0
    # an existing index's window wins over the model's, an asked-for one over both
    assert IngestOptions().window_for(clap, {"window_seconds": 4.0}) == 4.0
    assert IngestOptions(window_seconds=3).window_for(clap, {"window_seconds": 4.0}) == 3.0


def test_the_ray_probe_is_an_input_the_model_embeds():
    """The Ray actors' model check embeds something the model takes: a text, else a sound at
    its rate, else a picture of its size."""
    from xsearch.ingest.ray_backend import PROBE, probe_input

    assert probe_input(fake_spec(64, ("audio", "text"))) == ("text", PROBE)
    modality, wave = probe_input(fake_spec(64, ("audio", "image"), sample_rate=22_050))
    assert modality == "audio" and wave.shape == (22_050,)
    modality, picture = probe_input(fake_spec(64, ("image",), image_size=48))
    assert modality == "image" and picture.size == (48, 48)
    FakeEncoder(fake_spec(64, ("image",), image_size=48)).embed(modality, [picture])
