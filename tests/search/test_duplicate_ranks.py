"""A copy or near-copy of the query, in any modality, ranks first whatever the index's size.

Each modality's items sit high and wide against a query of their own modality (as sounds do
against a sound) and low and tight against the others (as frames do against a sound): the
setting in which a per-modality Gaussian z let ordinary cross-modal hits outrank the query's
own file.
"""

from __future__ import annotations

import numpy as np
import pytest

from xsearch.search.engine import SearchOptions, search
from xsearch.store.store import Changes, Store, Writer
from xsearch.store.tables import MODALITIES

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}
DIM = 1024
SIZES = (10, 100, 10_000)
COPIES = (1.0, 0.98)  # an exact and a near-exact copy of the query
BASIS = np.linalg.qr(np.random.default_rng(11).standard_normal((DIM, 3)))[0].T
QUERIES = {m: BASIS[i].astype(np.float32) for i, m in enumerate(MODALITIES)}
SAME = (0.5, 0.2)  # (mean, spread) of cosines between a query and items of its own modality
CROSS = {"image": (0.02, 0.005), "audio": (0.0, 0.008), "text": (-0.05, 0.01)}  # by item modality


def with_cosines(cosines: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors whose cosines with the three queries are the rows of `cosines`."""
    noise = rng.standard_normal((len(cosines), DIM))
    noise -= (noise @ BASIS.T) @ BASIS
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    rest = np.sqrt(1 - (cosines**2).sum(axis=1, keepdims=True))
    return (cosines @ BASIS + rest * noise).astype(np.float32)


def background(modality: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` unrelated items of `modality`: wide against its own query, tight against others."""
    columns = []
    for query in MODALITIES:
        if query == modality:
            columns.append(np.clip(rng.normal(*SAME, n), -0.3, 0.9))
        else:
            columns.append(rng.normal(*CROSS[modality], n))
    return with_cosines(np.stack(columns, axis=1), rng)


def copy_of(query: str, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A vector at `cosine` from the query of `query`, at cosine 0 from the other queries."""
    cosines = np.zeros((1, 3))
    cosines[0, MODALITIES.index(query)] = cosine
    return with_cosines(cosines, rng)[0]


def add(writer: Writer, changes: Changes, kind: str, items) -> int:
    """One asset of `kind` with `items`: [(modality, vector)]."""
    asset = writer.allocate_asset()
    path = f"/m/{asset}.{kind}"
    changes.new_assets.append(
        dict(asset_id=asset, path=path, content_hash=path, kind=kind, bytes=1, mtime=0.0,
             duration=None, labels=[])
    )  # fmt: skip
    ids = writer.allocate_items(len(items))
    for item, (modality, vector) in zip(ids, items):
        timed = modality != "text"
        changes.new_items.append(
            dict(item_id=int(item), asset_id=asset, modality=modality,
                 start=0.0 if timed else None, end=10.0 if timed else None, text=None)
        )  # fmt: skip
        changes.add_vectors(modality, np.array([item]), vector[None])
    return asset


def kind_of(modality: str) -> str:
    return "text" if modality == "text" else "video"


def planted_store(directory, size: int, copies) -> tuple[Store, dict]:
    """An index of `size` items, one per asset: `copies` [(query, modality, cosine)] planted,
    the rest unrelated and shared out over the modalities. Image and audio items are videos'.
    Returns the store and the asset of each copy."""
    rng = np.random.default_rng(size)
    planted = {}
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        for query, modality, cosine in copies:
            vector = copy_of(query, cosine, rng)
            planted[query, modality, cosine] = add(
                writer, changes, kind_of(modality), [(modality, vector)]
            )
        for i, modality in enumerate(MODALITIES):
            n = (size - len(copies) + 2 - i) // 3
            for vector in background(modality, n, rng):
                add(writer, changes, kind_of(modality), [(modality, vector)])
        writer.commit(changes)
    store = Store.open(directory)
    assert sum(store.faiss_index(m).ntotal for m in MODALITIES) == size
    return store, planted


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(size, query, modality) -> (store, planted): an index holding an exact and a near copy
    of the query in `modality` and no other copy, since a copy of the query in another
    modality would widen that modality's background and flatter a plain Gaussian z."""
    built: dict = {}

    def get(size: int, query: str, modality: str):
        key = (size, query, modality)
        if key not in built:
            directory = tmp_path_factory.mktemp("dup") / "idx"
            built[key] = planted_store(directory, size, [(query, modality, c) for c in COPIES])
        return built[key]

    return get


def first(stores, size, query, modality, cosine, target):
    """The asset of the copy and the hits of its query, the other copies left out."""
    store, planted = stores(size, query, modality)
    copy = planted[query, modality, cosine]
    others = frozenset(a for a in planted.values() if a != copy)
    hits = search(store, QUERIES[query], target, k=5, options=SearchOptions(exclude_assets=others))
    return copy, hits


@pytest.mark.parametrize("cosine", COPIES)
@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("query", MODALITIES)
@pytest.mark.parametrize("size", SIZES)
def test_copy_ranks_first_in_all(stores, size, query, modality, cosine):
    copy, hits = first(stores, size, query, modality, cosine, "all")
    assert hits[0].asset_id == copy, [(h.modality, round(h.cosine, 3), h.score) for h in hits]
    assert hits[0].cosine == pytest.approx(cosine, abs=1e-5)


@pytest.mark.parametrize("cosine", COPIES)
@pytest.mark.parametrize("modality", ["image", "audio"])
@pytest.mark.parametrize("query", MODALITIES)
@pytest.mark.parametrize("size", SIZES)
def test_copy_ranks_first_in_video(stores, size, query, modality, cosine):
    copy, hits = first(stores, size, query, modality, cosine, "video")
    assert hits[0].asset_id == copy, [(h.modality, round(h.cosine, 3), h.score) for h in hits]
    assert all(h.kind == "video" for h in hits)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cosine", COPIES)
def test_soundtrack_finds_its_video_in_a_small_index(tmp_path, cosine, seed):
    """The issue's index of a few photos, recordings and videos muxed from them: the query is
    a recording of the index, and one video's soundtrack is that recording (`cosine` 1, or
    0.98 once re-encoded). Two other videos' frames sit a little above the photos, in an image
    sample of eight whose spread is tiny."""
    rng = np.random.default_rng(seed)
    query = QUERIES["audio"]

    def frames(*cosines):  # images at these cosines from the (audio) query
        columns = np.zeros((len(cosines), 3))
        columns[:, MODALITIES.index("audio")] = cosines
        return with_cosines(columns, rng)

    with Writer(tmp_path / "idx", MODEL) as writer:
        changes = Changes()
        for photo in frames(*rng.normal(0.0, 0.002, 5)):
            add(writer, changes, "image", [("image", photo)])
        for recording in background("audio", 6, rng):
            add(writer, changes, "audio", [("audio", recording)])
        recording = add(writer, changes, "audio", [("audio", query)])
        frame, sound = frames(0.0, 0.027, 0.027), background("audio", 2, rng)
        soundtrack = copy_of("audio", cosine, rng)
        video = add(writer, changes, "video", [("image", frame[0]), ("audio", soundtrack)])
        for i in (1, 2):
            add(writer, changes, "video", [("image", frame[i]), ("audio", sound[i - 1])])
        writer.commit(changes)
    store = Store.open(tmp_path / "idx")
    assert [store.faiss_index(m).ntotal for m in ("image", "audio")] == [8, 10]
    hits = search(store, query, "video", k=3)
    assert hits[0].asset_id == video, [(h.modality, round(h.cosine, 3), h.score) for h in hits]
    assert (hits[0].modality, hits[0].cosine) == ("audio", pytest.approx(cosine, abs=1e-5))
    everything = search(store, query, "all", k=3)
    assert {h.asset_id for h in everything[:2]} == {recording, video}
