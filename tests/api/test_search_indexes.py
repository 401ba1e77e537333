"""`search_indexes`: one query over indexes built with different models, each embedding it with
its own, merged into one ranking by calibrated score."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import xsearch.media.audio
import xsearch.media.image
import xsearch.media.probe
import xsearch.media.video
from tests.helpers.fakes import media_of
from tests.helpers.several import fake_models, make_home, xsearch_open
from xsearch.api import Hit, search_indexes
from xsearch.errors import ParameterError, UsageError


@pytest.fixture(scope="module")
def home(tmp_path_factory, fake_media_index) -> Path:
    return make_home(tmp_path_factory.mktemp("several") / "home", fake_media_index)


@pytest.fixture
def media(fake_media_index) -> Path:
    """The media tree the indexes were built from (the same content for all of them)."""
    return media_of(fake_media_index("audioclip-like"))


def opened(home: Path, *names: str):
    return [xsearch_open(home, name) for name in names]


def test_a_text_query_merges_both_indexes_in_order_of_score(home):
    pictures, sounds = opened(home, "pictures", "sounds")
    hits = search_indexes([pictures, sounds], text="rain", target="audio", k=20)
    apart = {i.name: i.search(text="rain", target="audio", k=20) for i in (pictures, sounds)}
    assert len(hits) == 12 and {h.index for h in hits} == {"pictures", "sounds"}
    assert [h.rank for h in hits] == list(range(1, 13))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # each hit is its index's own hit, with the index named and the rank of the merge
    mine = {(h.index, h.item_id): h for h in hits}
    for name, alone in apart.items():
        for hit in alone:
            assert mine[name, hit.item_id].score == hit.score
            assert mine[name, hit.item_id].cosine == hit.cosine
    assert hits.generations == {"pictures": 1, "sounds": 1} and hits.skipped == {}
    top = search_indexes([pictures, sounds], text="rain", target="audio", k=5)
    assert [(h.index, h.item_id) for h in top] == [(h.index, h.item_id) for h in hits[:5]]


def test_an_exact_duplicate_in_one_index_comes_first(home, media):
    quiet, pictures = opened(home, "quiet", "pictures")  # only pictures holds bark.wav
    hits = search_indexes([quiet, pictures], audio=media / "dogs" / "bark.wav", k=10)
    assert hits[0].index == "pictures" and Path(hits[0].path).name == "bark.wav"
    assert hits[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert "quiet" in {h.index for h in hits[1:]}
    assert all(Path(h.path).name != "bark.wav" for h in hits if h.index == "quiet")


def test_an_index_without_the_target_is_skipped_with_its_reason(home):
    pictures, sounds = opened(home, "pictures", "sounds")
    hits = search_indexes([sounds, pictures], text="sky", target="image", k=5)
    assert len(hits) == 2 and {h.index for h in hits} == {"pictures"}
    assert {h.modality for h in hits} == {"image"}
    assert hits.skipped == {
        "sounds": "has no target image: its model (fake-512-audio-text) embeds audio, text"
    }
    assert hits.generations == {"pictures": 1}
    assert sounds.encoder.calls == {}  # its model was never asked


def test_an_index_whose_model_cannot_embed_the_query_is_skipped(home, media):
    pictures, sounds = opened(home, "pictures", "sounds")
    sky = media / "rain" / "sky.png"
    hits = search_indexes([sounds, pictures], image=sky, text="rain", target="audio")
    assert {h.index for h in hits} == {"pictures"} and len(hits) == 6
    assert hits.skipped["sounds"].startswith("cannot embed image queries: its model")
    assert sounds.encoder.calls == {}


def test_an_index_that_holds_nothing_of_the_target_is_skipped(home):
    barks, pictures = opened(home, "barks", "pictures")  # barks: one sound, no picture
    hits = search_indexes([barks, pictures], text="sky", target="image")
    assert {h.index for h in hits} == {"pictures"}
    assert hits.skipped == {"barks": "holds no image items"}
    videos = search_indexes([barks, pictures], text="walk", target="video")
    assert videos.skipped == {"barks": "holds no video items"} and len(videos) == 1
    sounds = search_indexes([barks, pictures], text="walk", target="audio")
    assert {h.index for h in sounds} == {"barks", "pictures"} and sounds.skipped == {}
    assert barks.encoder.calls == {"text": 1}  # the one search it could answer


def test_when_no_index_can_answer_it_is_one_line_with_every_reason(home):
    sounds, quiet = opened(home, "sounds", "quiet")
    with pytest.raises(UsageError) as caught:
        search_indexes([sounds, quiet], text="sky", target="image")
    message = str(caught.value)
    assert message.startswith("no index can answer this query: sounds has no target image")
    assert "; quiet has no target image" in message and "\n" not in message
    with pytest.raises(UsageError, match="sounds has no target image"):
        search_indexes([sounds], text="sky", target="image")  # alone: the same error


def test_equal_scores_keep_the_order_of_the_indexes_then_their_ranks(home):
    """`twin` is a copy of `pictures`: every hit of one has an equal twin in the other."""
    pictures, twin = opened(home, "pictures", "twin")
    hits = search_indexes([pictures, twin], text="rain", target="all", k=8)
    assert [h.index for h in hits] == ["pictures", "twin"] * 4
    assert [h.score for h in hits[::2]] == [h.score for h in hits[1::2]]
    assert [h.item_id for h in hits[::2]] == [h.item_id for h in hits[1::2]]
    assert [h.rank for h in hits] == list(range(1, 9))
    swapped = search_indexes([twin, pictures], text="rain", target="all", k=8)
    assert [h.index for h in swapped] == ["twin", "pictures"] * 4
    assert [h.item_id for h in swapped] == [h.item_id for h in hits]


def test_each_query_file_is_decoded_once_per_model_input(home, media, monkeypatch):
    decoded: Counter = Counter()

    def spy(module, name, key):
        real = getattr(module, name)

        def counted(path, *args, **kwargs):
            decoded[(name, Path(path).name, *key(args, kwargs))] += 1
            return real(path, *args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    spy(xsearch.media.audio, "load_audio", lambda args, kwargs: args[:1])  # the sample rate
    spy(xsearch.media.image, "load_image", lambda args, kwargs: ())
    spy(xsearch.media.video, "query_frames", lambda args, kwargs: (str(args[0]),))  # policy
    spy(xsearch.media.probe, "has_audio", lambda args, kwargs: ())
    indexes = opened(home, "pictures", "twin", "sounds")  # 44.1 kHz twice, 48 kHz once
    bark, walk = media / "dogs" / "bark.wav", media / "dogs" / "walk.mp4"
    hits = search_indexes(indexes, audio=bark, video=walk, target="audio")
    assert set(hits.generations) == {"pictures", "twin", "sounds"}
    assert decoded == {
        ("load_audio", "bark.wav", 44_100): 1,
        ("load_audio", "bark.wav", 48_000): 1,
        ("load_audio", "walk.mp4", 44_100): 1,
        ("load_audio", "walk.mp4", 48_000): 1,
        ("query_frames", "walk.mp4", "central"): 1,  # only the 44.1 kHz model embeds pictures
        ("has_audio", "walk.mp4"): 1,
    }


def test_a_bad_filter_on_any_index_fails_before_any_model_runs(home):
    pictures, sounds = opened(home, "pictures", "sounds")
    with pytest.raises(ParameterError, match="bad filter") as caught:
        search_indexes([pictures, sounds], text="rain", where="no_such_column = 1")
    assert caught.value.param == "where" and "\n" not in str(caught.value)
    assert pictures.encoder.calls == sounds.encoder.calls == {}


@pytest.mark.parametrize(
    "options, error",
    [
        ({"k": 0}, "k: must be at least 1"),
        ({"target": "smell"}, "target: unknown target 'smell'"),
        ({"text": ()}, "give a query"),
    ],
)
def test_bad_requests_fail_before_opening_anything(options, error):
    query = {"text": "rain", **options}
    with pytest.raises(UsageError, match=error):
        search_indexes(["no-such-index"], **query)


def test_names_open_under_root_with_their_own_models(home, monkeypatch):
    fake_models(monkeypatch)
    hits = search_indexes(["sounds", "pictures"], text="rain", root=home, k=4)
    assert len(hits) == 4 and {h.index for h in hits} <= {"sounds", "pictures"}
    with pytest.raises(UsageError, match="no index at"):
        search_indexes(["sounds", "nothing"], text="rain", root=home)
    with pytest.raises(ParameterError, match="index: sounds given twice"):
        search_indexes(["sounds", "sounds"], text="rain", root=home)
    with pytest.raises(ParameterError, match="weights: no index other"):
        search_indexes(["sounds"], text="rain", root=home, weights={"other": "random"})


def test_a_hit_names_its_index_in_json_only_when_merged(home):
    (pictures,) = opened(home, "pictures")
    alone = pictures.search(text="rain", k=1)[0]
    merged = search_indexes([pictures], text="rain", k=1)[0]
    assert "index" not in alone.as_dict() and merged.as_dict()["index"] == "pictures"
    assert {**alone.as_dict(), "index": "pictures"} == merged.as_dict()
    assert Hit.from_dict(merged.as_dict()) == merged
    assert Hit.from_dict(alone.as_dict()) == alone
    with pytest.raises(TypeError):
        Hit.from_dict({**alone.as_dict(), "index": 3})


def test_a_files_moments_stay_together_across_indexes(home):
    pictures, sounds = opened(home, "pictures", "sounds")
    hits = search_indexes([pictures, sounds], text="rain", target="all", k=6, per_file=2)
    files = list(dict.fromkeys((h.index, h.asset_id) for h in hits))
    assert len(files) == 6 and len(hits) > 6  # some files bring a second moment
    for rank, (index, asset) in enumerate(files, 1):
        moments = [i for i, h in enumerate(hits) if (h.index, h.asset_id) == (index, asset)]
        assert moments == list(range(moments[0], moments[0] + len(moments)))  # together
        assert {hits[i].rank for i in moments} == {rank} and len(moments) <= 2
    best = [max(h.score for h in hits if (h.index, h.asset_id) == f) for f in files]
    assert best == sorted(best, reverse=True)
