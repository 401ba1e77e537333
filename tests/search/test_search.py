"""Search: filters (--where, exclusions), approximate indexes against exact search, the API."""

from __future__ import annotations

import numpy as np
import pytest

from xsearch.errors import ParameterError, UsageError
from xsearch.search.engine import SearchOptions, fuse, search
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Changes, Store, Writer

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}


def clustered(n: int, seed: int = 0, dim: int = 1024) -> np.ndarray:
    """Unit vectors around 20 centres: a collection with structure, like real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    v = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """2,000 audio items, 10 per asset; assets alternate between kind 'audio' and 'video'."""
    directory = tmp_path_factory.mktemp("search") / "idx"
    vectors = clustered(2000)
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        for a in range(200):
            asset = writer.allocate_asset()
            changes.new_assets.append(
                {"asset_id": asset, "path": f"/m/{a}.x", "content_hash": str(a),
                 "kind": "video" if a % 2 else "audio", "bytes": 1, "mtime": 0.0,
                 "duration": 100.0, "labels": ["dog"] if a % 3 == 0 else ["rain"]}
            )  # fmt: skip
            for w in range(10):
                changes.new_items.append(
                    {"item_id": a * 10 + w, "asset_id": asset, "modality": "audio",
                     "start": 10.0 * w, "end": 10.0 * (w + 1), "text": None}
                )  # fmt: skip
        ids = writer.allocate_items(2000)
        changes.add_vectors("audio", ids, vectors)
        return writer.commit(changes)


def exact(store: Store, query: np.ndarray, k: int) -> np.ndarray:
    ids, vectors = store.embeddings("audio")
    return ids[np.argsort(-(vectors @ query), kind="stable")[:k]]


def test_exact_search_equals_brute_force(store):
    query = clustered(1, seed=5)[0]
    hits = search(store, query, "audio", k=10)
    assert [h.rank for h in hits] == list(range(1, 11))
    assert [h.item_id for h in hits] == list(exact(store, query, 10))
    assert all(h.start == 10.0 * (h.item_id % 10) for h in hits)


def test_where_filters_on_asset_and_item_columns(store):
    query = clustered(1, seed=6)[0]
    options = SearchOptions(where="kind = 'video' AND start >= 50 AND list_contains(labels, 'dog')")
    hits = search(store, query, "audio", k=20, options=options)
    assert len(hits) == 20
    for h in hits:
        asset = h.asset_id
        assert asset % 2 == 1 and asset % 3 == 0 and h.start >= 50 and "dog" in h.labels
    allowed = [i for i in exact(store, query, 2000) if (i // 10) % 6 == 3 and i % 10 >= 5]
    assert [h.item_id for h in hits] == allowed[:20]


def test_bad_where_is_a_usage_error(store):
    with pytest.raises(UsageError, match="where: bad filter"):
        search(store, clustered(1)[0], "audio", options=SearchOptions(where="no_such_column = 1"))
    with pytest.raises(UsageError, match="where: bad filter"):
        search(store, clustered(1)[0], "audio", options=SearchOptions(where="1; DROP TABLE x"))
    sneaky = "path IN (SELECT * FROM read_csv('/etc/hostname'))"
    with pytest.raises(UsageError, match="where: bad filter"):  # no file is ever read
        search(store, clustered(1)[0], "audio", options=SearchOptions(where=sneaky))


def test_excluded_assets_never_come_back(store):
    query = clustered(1, seed=7)[0]
    first = search(store, query, "audio", k=5)
    excluded = frozenset(h.asset_id for h in first)
    again = search(store, query, "audio", k=50, options=SearchOptions(exclude_assets=excluded))
    assert not excluded & {h.asset_id for h in again}


def test_errors(store):
    with pytest.raises(ParameterError, match=r"^k: ") as bad_k:  # neutral words, not "-k"
        search(store, clustered(1)[0], "audio", k=0)
    assert bad_k.value.param == "k"
    with pytest.raises(UsageError, match="no image items"):
        search(store, clustered(1)[0], "image")
    with pytest.raises(UsageError, match="unknown target"):
        search(store, clustered(1)[0], "smell")
    with pytest.raises(UsageError, match="cancel out"):
        fuse(np.stack([clustered(1)[0], -clustered(1)[0]]))


APPROXIMATE = [("IVF16,Flat", "nprobe"), ("HNSW32", "ef"), ("IVF16,PQ16,RFlat", "nprobe")]
WIDE = {"nprobe": {"nprobe": 16}, "ef": {"ef": 256}}  # (nearly) exact search


def wide(factory: str, knob: str, k_factor: float = 100) -> dict:
    """Options for a (nearly) exact search; refined indexes also re-rank a long shortlist
    (PQ16 codes of 1024-d vectors are too coarse for the default's)."""
    return {**WIDE[knob], **({"k_factor": k_factor} if "RFlat" in factory else {})}


@pytest.mark.parametrize(("factory", "knob"), APPROXIMATE)
def test_approximate_index_against_exact(store, tmp_path, factory, knob):
    import shutil

    directory = tmp_path / "approx"
    shutil.copytree(store.dir, directory)
    approx = rebuild_indexes(directory, factory)
    queries = clustered(20, seed=8)
    recall = []
    for q in queries:
        want = set(exact(store, q, 10))
        options = SearchOptions(**wide(factory, knob))
        got = {h.item_id for h in search(approx, q, "audio", k=10, options=options)}
        recall.append(len(want & got) / 10)
    assert np.mean(recall) >= 0.95  # wide search: (nearly) exact
    narrow = SearchOptions(nprobe=1) if knob == "nprobe" else SearchOptions(ef=10)
    if "RFlat" in factory:
        narrow = SearchOptions(nprobe=1, k_factor=1)  # both knobs reach FAISS
    narrow_recall = np.mean(
        [
            len(set(exact(store, q, 10)) & {h.item_id for h in search(approx, q, "audio", 10,
                                                                       narrow)}) / 10
            for q in queries
        ]
    )  # fmt: skip
    assert narrow_recall <= np.mean(recall)  # the knob reaches FAISS


@pytest.mark.parametrize(("factory", "knob"), APPROXIMATE)
def test_approximate_index_honours_filters(store, tmp_path, factory, knob):
    """--where and exclusions reach FAISS through every index type, refined ones included
    (their id filter must be translated to the index's internal positions)."""
    import shutil

    directory = tmp_path / "approx"
    shutil.copytree(store.dir, directory)
    approx = rebuild_indexes(directory, factory)
    query = clustered(1, seed=9)[0]
    top = search(approx, query, "audio", k=5, options=SearchOptions(**wide(factory, knob)))
    excluded = frozenset({top[0].asset_id})
    options = SearchOptions(where="kind = 'video'", exclude_assets=excluded, **wide(factory, knob))
    hits = search(approx, query, "audio", k=10, options=options)
    assert len(hits) == 10
    assert all(h.kind == "video" and h.asset_id not in excluded for h in hits)
    allowed = [i for i in exact(store, query, 2000) if (i // 10) % 2 and i // 10 not in excluded]
    assert len({h.item_id for h in hits} & set(allowed[:10])) >= 9
