"""An index built with a CLAP model (text and audio only), through the public API: windows of
the model's clip length, videos by their sound, images refused, the model followed later."""

from __future__ import annotations

import numpy as np
import pytest

import xsearch
from tests.helpers.media_tree import make_media
from xsearch.errors import UsageError


@pytest.fixture(scope="module")
def clap_index(tmp_path_factory):
    """The media tree ingested with laion-clap-tiny (random weights, 2 s clips)."""
    root = tmp_path_factory.mktemp("clap")
    media = make_media(root / "media")
    index = xsearch.open(
        "sounds", root / "indexes", create=True, weights="random", model="laion-clap-tiny"
    )
    report = index.ingest([media], xsearch.api.IngestOptions(workers=0))
    return index, report, root


def test_items_are_audio_windows_of_the_models_clip_and_texts(clap_index):
    index, _, _ = clap_index
    status = index.status(failures=True)
    assert status.model is not None and status.model["config"] == "laion-clap-tiny"
    assert set(status.items) == {"audio", "text"}
    assert status.recipe == {"window_seconds": 2.0, "frames": "central"}
    assert status.targets and "image" not in status.targets
    # storm.wav is 25 s: 2 s windows 0-2, ..., 22-24, then the 1 s tail
    hits = index.search(text="siren", target="audio", k=100, where="path LIKE '%storm.wav'")
    spans = sorted((h.start, h.end) for h in hits)
    assert spans[0] == (0.0, 2.0) and spans[-1][1] == pytest.approx(25.0, abs=0.05)
    assert len(spans) == 13
    assert all(np.isfinite(h.score) for h in hits)


def test_a_video_gives_its_sound_and_status_says_its_frames_are_skipped(clap_index):
    index, _, _ = clap_index
    hits = index.search(text="a dog", target="video", k=5)
    assert any(h.path.endswith("walk.mp4") and h.modality == "audio" for h in hits)
    notes = index.status().notes
    assert notes == [
        "1 video: sound only, frames skipped (model laion-clap-tiny embeds audio, text)"
    ]


def test_pictures_are_failed_with_the_reason(clap_index):
    _, report, _ = clap_index
    reasons = dict(report.failed)
    sky = next(r for p, r in reasons.items() if str(p).endswith("sky.png"))
    assert "laion-clap-tiny does not embed image" in sky


def test_image_queries_and_targets_are_one_line_errors(clap_index):
    index, _, root = clap_index
    with pytest.raises(UsageError, match="image") as caught:
        index.search(text="sky", target="image")
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="not image") as caught:
        index.search(image=[root / "media" / "rain" / "sky.png"], target="audio")
    assert "\n" not in str(caught.value)


def test_a_reopened_index_follows_its_model(clap_index):
    _, _, root = clap_index
    again = xsearch.open("sounds", root / "indexes")
    hits = again.search(text="rain", target="audio", k=3)
    assert len(hits) == 3
    assert again.encoder.spec.config == "laion-clap-tiny" and again.encoder.dim == 32
    other = xsearch.open("sounds", root / "indexes", weights="random", model="msclap-2023-tiny")
    with pytest.raises(UsageError, match="built with"):
        other.search(text="rain", target="audio")
