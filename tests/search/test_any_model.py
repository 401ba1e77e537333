"""Search with models of other widths and modality sets (tests.helpers.fakes.FAKE_SPECS): items
find themselves, queries are decoded as the model expects, every target and filter works, and
what the model or the index lacks is refused in one line before any model call."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.fakes import FAKE_SPECS, TARGETS, item_of, lacking, media_of
from xsearch.errors import ParameterError, UsageError

SHAPES = list(FAKE_SPECS)
NARROW = [s for s in SHAPES if lacking(FAKE_SPECS[s])]  # models that lack a modality


def names(hits) -> set[str]:
    return {Path(h.path).name for h in hits}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_item_is_found_first_by_its_own_vector(fake_media_index, shape):
    index = fake_media_index(shape)
    for modality in FAKE_SPECS[shape].modalities:
        ids = index.store.item_ids(modality).tolist()
        assert ids
        for item in ids:
            hits = index.search(like=item, target=modality, k=len(ids))
            assert len(hits) == len(ids) and all(h.modality == modality for h in hits)
            assert hits[0].cosine == pytest.approx(1.0, abs=1e-5)
            # identical windows (the storm repeats one sound) tie: the item is among the ties
            assert item in {h.item_id for h in hits if h.cosine > 1 - 1e-5}


@pytest.mark.parametrize("shape", SHAPES)
def test_query_sounds_are_decoded_at_the_models_rate(fake_media_index, shape):
    """The fake's vectors are keyed by the samples: a query sound finds its own item with
    cosine 1 only when it is decoded exactly as ingest decoded it, at the model's rate.
    (Pictures are not compared: the fake hashes the picture as given, and ingest hands it
    a copy already cropped to the model's size, which a real model's own resize makes equal.)"""
    index = fake_media_index(shape)
    media = media_of(index)
    hits = index.search(audio=media / "dogs" / "bark.wav", target="audio", k=3)
    assert Path(hits[0].path).name == "bark.wav"
    assert hits[0].cosine == pytest.approx(1.0, abs=1e-5)
    videos = index.search(video=media / "dogs" / "walk.mp4", target="video", k=5)
    assert [Path(h.path).name for h in videos] == ["walk.mp4"]
    sound = item_of(index, "walk.mp4", "audio")
    assert index.search(video=media / "dogs" / "walk.mp4", target="audio", k=1)[0].item_id == sound


@pytest.mark.parametrize("shape", SHAPES)
def test_video_and_all_targets(fake_media_index, shape):
    index = fake_media_index(shape)
    walk = item_of(index, "walk.mp4", "audio")
    videos = index.search(like=walk, target="video", k=5)
    assert [(Path(h.path).name, h.kind) for h in videos] == [("walk.mp4", "video")]

    # (an audio query: with so few pictures and texts, their calibration means little)
    first = item_of(index, "bark.wav", "audio")
    everything = index.search(like=first, target="all", k=20)
    with_items = set(index.store.items.column("asset_id").to_pylist())
    assert sorted(h.asset_id for h in everything) == sorted(with_items)  # each asset once
    # each asset is represented by its best item: for the query's own asset, the query item
    own = next(h for h in everything if h.item_id == first)
    assert own.cosine == pytest.approx(1.0, abs=1e-5)
    kinds = {a["kind"] for a in index.store.assets.to_pylist() if a["asset_id"] in with_items}
    assert {h.kind for h in everything} == kinds


@pytest.mark.parametrize("shape", SHAPES)
def test_where_filters(fake_media_index, shape):
    index = fake_media_index(shape)
    storm = item_of(index, "storm.wav", "audio", start=0.0)
    later = index.search(like=storm, target="audio", k=10, where="start >= 10")
    assert len(later) == 2 and all(h.start >= 10 for h in later)
    assert names(later) == {"storm.wav"}
    dogs = index.search(like=storm, target="audio", k=10, where="list_contains(labels, 'dogs')")
    assert names(dogs) == {"bark.wav", "walk.mp4"}
    videos = index.search(like=storm, target="all", k=10, where="kind = 'video'")
    assert names(videos) == {"walk.mp4"}
    with pytest.raises(ParameterError) as bad:
        index.search(like=storm, target="audio", where="no_such_column = 1")
    assert bad.value.param == "where" and "\n" not in str(bad.value)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_target_the_index_lacks_is_refused_in_one_line(fake_media_index, shape):
    index = fake_media_index(shape)
    spec = FAKE_SPECS[shape]
    allowed = ", ".join(TARGETS[shape])
    assert index.targets == TARGETS[shape]
    for target in [*lacking(spec), "sound"]:
        with pytest.raises(ParameterError) as refused:
            index.search(like=0, target=target)
        message = str(refused.value)
        assert refused.value.param == "target" and "\n" not in message
        assert f"{target!r}; use one of {allowed}" in message


@pytest.mark.parametrize("shape", NARROW)
def test_a_query_the_model_cannot_embed_is_refused_in_one_line(fake_media_index, shape):
    index = fake_media_index(shape)
    spec = FAKE_SPECS[shape]
    media = media_of(index)
    queries = {"text": "rain", "image": media / "rain" / "sky.png"}
    for modality in lacking(spec):
        with pytest.raises(UsageError) as refused:
            index.search(**{modality: queries[modality]}, target="audio")
        message = str(refused.value)
        assert message == f"model {spec.config} embeds {', '.join(spec.modalities)}, not {modality}"
    assert index.encoder.calls == {}, "refused before any model call"
