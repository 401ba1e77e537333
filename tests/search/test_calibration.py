"""Calibrated scores, video/all targets, the reference sample, weighted and item queries."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from xsearch.errors import UsageError
from xsearch.search import calibrate
from xsearch.search.engine import SearchOptions, search
from xsearch.store import reference
from xsearch.store.reference import bottom_k
from xsearch.store.store import Changes, Store, Writer
from xsearch.store.tables import MODALITIES

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}
DIM = 1024
rng = np.random.default_rng(7)
QUERY = rng.standard_normal(DIM).astype(np.float32)
QUERY /= np.linalg.norm(QUERY)


def around(query: np.ndarray, cosine: float, n: int, seed: int, spread: float = 0.0):
    """`n` unit vectors whose cosine with `query` is `cosine` (+ gaussian `spread`)."""
    r = np.random.default_rng(seed)
    noise = r.standard_normal((n, DIM)).astype(np.float32)
    noise -= np.outer(noise @ query, query)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    c = np.clip(cosine + spread * r.standard_normal(n), -1, 1)[:, None]
    return (c * query + np.sqrt(1 - c**2) * noise).astype(np.float32)


def add(writer, changes, path, kind, items):
    """One asset with `items`: [(modality, start, vector)]."""
    asset = writer.allocate_asset()
    changes.new_assets.append(
        dict(
            asset_id=asset,
            path=path,
            content_hash=path,
            kind=kind,
            bytes=1,
            mtime=0.0,
            duration=None,
            labels=[],
        )
    )
    for modality, start, vector in items:
        (item,) = writer.allocate_items(1)
        end = None if start is None else start + 10.0
        changes.new_items.append(
            dict(
                item_id=int(item),
                asset_id=asset,
                modality=modality,
                start=start,
                end=end,
                text=None,
            )
        )
        changes.add_vectors(modality, np.array([item]), vector[None])
    return asset


@pytest.fixture(scope="module")
def offset_store(tmp_path_factory) -> Store:
    """Images sit high on the cosine scale with a narrow spread, sounds low with a wider one
    (as pairs do in a joint space): the best raw cosine is an ordinary image, while one sound
    stands far out from its background. A video holds an ordinary frame and that sound."""
    directory = tmp_path_factory.mktemp("calib") / "idx"
    images = around(QUERY, 0.50, 200, seed=1, spread=0.01)
    sounds = around(QUERY, 0.05, 300, seed=2, spread=0.03)
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        for i, v in enumerate(images):
            add(writer, changes, f"/m/img{i}.png", "image", [("image", None, v)])
        for i, v in enumerate(sounds[:-1]):
            add(writer, changes, f"/m/snd{i}.wav", "audio", [("audio", 0.0, v)])
        standout = around(QUERY, 0.40, 1, seed=3)[0]  # ~12 spreads above the sounds' mean
        frame = around(QUERY, 0.50, 1, seed=4)[0]
        add(
            writer,
            changes,
            "/m/clip.mp4",
            "video",
            [("image", 5.0, frame), ("audio", 0.0, sounds[-1]), ("audio", 10.0, standout)],
        )
        writer.commit(changes)
    return Store.open(directory)


def test_relevance_is_distance_from_the_query_background():
    """Background spreads above the typical unrelated item, on Fisher's scale (atanh)."""
    ref = around(QUERY, 0.2, 2000, seed=5, spread=0.05)
    location, spread = calibrate.background(ref, QUERY)
    assert location == pytest.approx(np.arctanh(0.2), abs=0.005)
    assert spread == pytest.approx(0.05 / (1 - 0.2**2), rel=0.05)  # d atanh = dc / (1 - c^2)
    z = calibrate.relevance(np.tanh([location, location + 2 * spread]), ref, QUERY)
    assert z == pytest.approx([0.0, 2.0])


def test_small_samples_lean_on_the_prior():
    prior = calibrate.prior_spread(DIM)
    assert prior == pytest.approx(1 / 32)
    assert calibrate.background(np.empty((0, DIM), np.float32), QUERY) == (0.0, prior)
    one = around(QUERY, 0.2, 1, seed=6)
    assert calibrate.background(one, QUERY) == pytest.approx((np.arctanh(0.2), prior))
    agreeing = around(QUERY, 0.2, 10, seed=6, spread=0.0005)  # ten items that happen to agree
    assert 0.7 * prior < calibrate.background(agreeing, QUERY)[1] < prior
    tight = around(QUERY, 0.2, 2000, seed=6, spread=0.0005)  # many: the floor, not the prior
    assert calibrate.background(tight, QUERY)[1] == calibrate.FLOOR * prior


def test_copies_and_related_items_do_not_move_the_background():
    unrelated = around(QUERY, 0.1, 400, seed=17, spread=0.05)  # not 7: QUERY's seed
    related = around(QUERY, 0.9, 40, seed=8, spread=0.05)
    copies = np.repeat(QUERY[None], 20, axis=0)
    location, spread = calibrate.background(unrelated, QUERY)
    mixed = calibrate.background(np.vstack([unrelated, related, copies]), QUERY)
    assert mixed[0] == pytest.approx(location, abs=0.2 * spread)
    assert mixed[1] == pytest.approx(spread, rel=0.1)  # a plain std grows sixfold here
    only_copies = np.repeat(QUERY[None], 3, axis=0)  # nothing is left to be background
    assert calibrate.background(only_copies, QUERY) == (0.0, calibrate.prior_spread(DIM))


def test_scores_rise_with_the_cosine_and_a_copy_stands_out_of_a_wide_background():
    """Sounds against a sound: high and wide, where a Gaussian z put a copy 2.5 spreads out."""
    ref = around(QUERY, 0.5, 300, seed=9, spread=0.2)
    cosines = np.sort(np.r_[np.random.default_rng(1).uniform(-1, 1, 200), 0.98, 1 - 1e-7, 1.0])
    z = calibrate.relevance(cosines, ref, QUERY)
    assert np.all(np.diff(z) >= 0)
    assert z[-1] == z[-2] > 20  # float32 copies of the query all score the same
    assert calibrate.relevance(np.array([0.98]), ref, QUERY)[0] > 5


def test_all_ranks_by_calibrated_score_not_raw_cosine(offset_store):
    hits = search(offset_store, QUERY, "all", k=5)
    top = hits[0]
    assert (top.path, top.modality, top.start) == ("/m/clip.mp4", "audio", 10.0)
    assert top.score > 8
    raw_best = max(hits, key=lambda h: h.cosine)
    assert raw_best.modality == "image" and raw_best.cosine > top.cosine  # raw would mislead
    assert len({h.asset_id for h in hits}) == len(hits)  # one hit per asset
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_min_score_means_the_same_for_every_pairing(offset_store):
    hits = search(offset_store, QUERY, "all", k=50, options=SearchOptions(min_score=6))
    assert [(h.path, h.start) for h in hits] == [("/m/clip.mp4", 10.0)]
    images = search(offset_store, QUERY, "image", k=50, options=SearchOptions(min_score=6))
    assert images == []  # the images' high cosines are ordinary for images
    some = search(offset_store, QUERY, "image", k=50, options=SearchOptions(min_score=1))
    assert some and all(h.score >= 1 for h in some) and len(some) < 50


def test_single_modality_scores_keep_the_cosine_order(offset_store):
    hits = search(offset_store, QUERY, "audio", k=20)
    assert [h.cosine for h in hits] == sorted((h.cosine for h in hits), reverse=True)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_video_target_ranks_videos_by_their_best_item(offset_store):
    hits = search(offset_store, QUERY, "video", k=10)
    assert len(hits) == 1  # one video in the index
    (hit,) = hits
    assert (hit.kind, hit.modality, hit.start, hit.end) == ("video", "audio", 10.0, 20.0)
    framed = search(
        offset_store, QUERY, "video", k=10, options=SearchOptions(where="modality = 'image'")
    )
    assert framed[0].modality == "image" and framed[0].start == 5.0


def test_video_target_without_videos(tmp_path):
    with Writer(tmp_path / "idx", MODEL) as writer:
        changes = Changes()
        add(writer, changes, "/m/a.wav", "audio", [("audio", 0.0, QUERY)])
        writer.commit(changes)
    store = Store.open(tmp_path / "idx")
    with pytest.raises(UsageError, match="no video items"):
        search(store, QUERY, "video")
    with pytest.raises(UsageError, match="unknown target"):
        search(store, QUERY, "videos")
    assert search(store, QUERY, "all")[0].path == "/m/a.wav"


def test_asset_targets_widen_until_k_assets(tmp_path):
    """A long file has many windows near the query: it must not crowd out other files."""
    with Writer(tmp_path / "idx", MODEL) as writer:
        changes = Changes()
        windows = around(QUERY, 0.9, 60, seed=8, spread=0.01)
        add(
            writer,
            changes,
            "/m/long.mp4",
            "video",
            [("audio", 10.0 * i, v) for i, v in enumerate(windows)],
        )
        for i, v in enumerate(around(QUERY, 0.1, 5, seed=9)):
            add(writer, changes, f"/m/v{i}.mp4", "video", [("image", 1.0, v)])
        writer.commit(changes)
    hits = search(Store.open(tmp_path / "idx"), QUERY, "video", k=4)
    assert len(hits) == 4 and len({h.asset_id for h in hits}) == 4
    assert hits[0].path == "/m/long.mp4"


def test_reference_sample_follows_commits(tmp_path, monkeypatch):
    """Adds, removals that hit a full sample (refilled from all vectors) and rebuilds all
    leave the bottom-k sketch of the live items."""
    monkeypatch.setattr(reference, "REFERENCE_SIZE", 8)
    directory = tmp_path / "idx"
    assets = []
    for round_ in range(3):
        with Writer(directory, MODEL) as writer:
            changes = Changes()
            for i in range(5):
                vec = around(QUERY, 0.1, 1, seed=100 * round_ + i)[0]
                assets.append(
                    add(writer, changes, f"/m/{round_}-{i}.wav", "audio", [("audio", 0.0, vec)])
                )
            writer.commit(changes)
    store = Store.open(directory)
    ids, vectors = store.embeddings("audio")
    assert store.reference("audio")[0].tolist() == bottom_k(ids, vectors)[0].tolist()
    sampled = set(store.reference("audio")[0].tolist())
    items = store.items.to_pylist()
    victims = {r["asset_id"] for r in items if r["item_id"] in sampled}
    with Writer(directory, MODEL) as writer:
        writer.commit(Changes(removed_assets=set(list(victims)[:3])))
    store = Store.open(directory)
    ids, vectors = store.embeddings("audio")
    ref_ids, ref_vectors = store.reference("audio")
    assert len(ref_ids) == 8
    assert ref_ids.tolist() == bottom_k(ids, vectors)[0].tolist()
    assert np.array_equal(ref_vectors, bottom_k(ids, vectors)[1])


def test_concurrent_searches_equal_serial(offset_store):
    targets = [*MODALITIES[:2], "video", "all"]
    want = {
        t: search(offset_store, QUERY, t, k=5, options=SearchOptions(where="TRUE")) for t in targets
    }
    errors, got = [], []

    def worker(t):
        try:
            for _ in range(5):
                got.append(
                    (t, search(offset_store, QUERY, t, k=5, options=SearchOptions(where="TRUE")))
                )
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in targets * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 80 and all(hits == want[t] for t, hits in got)
