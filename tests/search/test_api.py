"""The Python API: open an index by name and search it without the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

import xsearch
from tests.helpers.media_tree import make_media
from xsearch.errors import UsageError
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.search.engine import Hit


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_audioclip):
    base = tmp_path_factory.mktemp("api")
    media = make_media(base / "media")
    ingest(find_files([media]), base / "home" / "media", tiny_audioclip, IngestOptions(workers=0))
    return base


def test_open_and_search_by_text(home):
    index = xsearch.open("media", root=home / "home", device="cpu")
    hits = index.search(text="rain", target="audio", k=3)
    assert len(hits) == 3 and all(isinstance(h, Hit) for h in hits)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_a_query_file_finds_itself_unless_excluded(home):
    index = xsearch.open("media", root=home / "home", device="cpu")
    sky = home / "media" / "rain" / "sky.png"
    assert index.search(image=sky, target="image", k=1)[0].path == str(sky.resolve())
    others = index.search(image=sky, target="image", k=5, exclude_self=True)
    assert str(sky.resolve()) not in {h.path for h in others}


def test_where_through_the_api(home):
    index = xsearch.open("media", root=home / "home", device="cpu")
    hits = index.search(text="storm", target="audio", k=10, where="start >= 10")
    assert hits and all(h.start >= 10 for h in hits)
    assert {Path(h.path).name for h in hits} == {"storm.wav"}


def test_unknown_index(tmp_path):
    with pytest.raises(UsageError, match="no index"):
        xsearch.open("nothing", root=tmp_path)


def test_weights_and_item_queries(home):
    index = xsearch.open("media", root=home / "home", device="cpu")
    rain = index.search(text="rain", target="audio", k=50)  # every audio item
    zero = index.search(text=[("rain", 1.0), ("storm", 0.0)], target="audio", k=50)
    assert [h.item_id for h in zero] == [h.item_id for h in rain]
    assert [h.score for h in zero] == pytest.approx([h.score for h in rain], abs=1e-4)
    # a negative weight turns the query around: the order reverses
    away = index.search(text=("rain", -1.0), target="audio", k=50)
    assert [h.item_id for h in away] == [h.item_id for h in reversed(rain)]
    # an indexed item as the query is the same as its file
    sky = home / "media" / "rain" / "sky.png"
    by_file = index.search(image=sky, target="image", k=3)
    by_item = index.search(like=by_file[0].item_id, target="image", k=3)
    assert [h.item_id for h in by_item] == [h.item_id for h in by_file]
    assert by_item[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert by_file[0].asset_id not in {
        h.asset_id for h in index.search(like=by_file[0].item_id, target="all", exclude_self=True)
    }
    with pytest.raises(UsageError, match="item ids"):
        index.search(like=["sky"], target="image")
    with pytest.raises(UsageError, match="give a query"):
        index.search(target="image")


def test_empty_index(tmp_path):
    from xsearch.store.store import Writer

    Writer(tmp_path / "fresh", {"encoder": "audioclip"}).close()  # created, nothing committed
    index = xsearch.open("fresh", root=tmp_path)
    assert not index.exists and index.status().generation == 0
    with pytest.raises(UsageError, match="fresh is empty"):
        index.search(text="rain")


def test_a_reader_follows_when_its_generation_is_gone(tmp_path, tiny_audioclip):
    """The writer deletes generation g's files once g + 2 is published: an open index then
    moves to the newest generation and answers from it alone."""
    from xsearch.samples import image_samples

    folder = tmp_path / "media"
    folder.mkdir()
    pictures = list(image_samples((64, 48)).items())
    encoder = tiny_audioclip
    directory = tmp_path / "home" / "live"
    for name, picture in pictures[:3]:
        picture.save(folder / name)
        ingest(find_files([folder]), directory, encoder, IngestOptions(workers=0))
        if name == pictures[0][0]:
            index = xsearch.open("live", root=tmp_path / "home", device="cpu")
            index.use_encoder(encoder)
            assert index.store.generation == 1  # the reader holds generation 1
    hits = index.search(text="sky", target="image", k=10)  # generation 1's files are gone
    assert index.store.generation == 3
    assert {Path(h.path).name for h in hits} == {name for name, _ in pictures[:3]}
