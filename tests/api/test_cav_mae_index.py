"""An index built with CAV-MAE (audio and image, no text), through the public API and the
command line: sounds and pictures find each other, a video gives its frame and its sound, and
text queries, text targets and texts are refused in one line."""

from __future__ import annotations

import pytest

import xsearch
from tests.helpers.cli import run_cli
from tests.helpers.media_tree import make_media
from xsearch.errors import UsageError


@pytest.fixture(scope="module")
def cav_index(tmp_path_factory):
    """The media tree ingested with cav-mae-tiny (random weights, 2.575 s clips)."""
    root = tmp_path_factory.mktemp("cav")
    media = make_media(root / "media")
    index = xsearch.open(
        "av", root / "indexes", create=True, weights="random", model="cav-mae-tiny"
    )
    report = index.ingest([media], xsearch.api.IngestOptions(workers=0))
    return index, report, root


def test_sound_and_pictures_find_each_other(cav_index):
    index, _, root = cav_index
    status = index.status()
    assert set(status.items) == {"audio", "image"}
    assert "text" not in status.targets and "video" in status.targets
    sky = root / "media" / "rain" / "sky.png"
    assert index.search(image=[sky], target="image", k=1)[0].path.endswith("sky.png")
    bark = root / "media" / "dogs" / "bark.wav"
    assert index.search(audio=[bark], target="audio", k=1)[0].path.endswith("bark.wav")
    hits = index.search(audio=[bark], target="image", k=3)
    assert hits and {h.modality for h in hits} == {"image"}
    video = index.search(image=[sky], target="video", k=1, per_file=2)
    assert {h.modality for h in video} == {"image", "audio"}  # its frame and its sound


def test_text_is_refused_in_one_line(cav_index):
    index, _, root = cav_index
    with pytest.raises(UsageError, match="not text") as caught:
        index.search(text="a dog", target="audio")
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        index.search(audio=[root / "media" / "dogs" / "bark.wav"], target="text")
    assert "\n" not in str(caught.value)
    # the video's caption (its sidecar text) is not an item: the model has no text tower
    assert all(h.modality != "text" for h in index.search(like=0, target="all", k=20))


def test_the_command_line_refuses_a_text_query(cav_index):
    _, _, root = cav_index
    env = {"XSEARCH_HOME": str(root / "indexes")}
    done = run_cli("query", "--index", "av", "--text", "dog", "--target", "audio", env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: model cav-mae-tiny embeds image, audio, not text"], done.stderr
