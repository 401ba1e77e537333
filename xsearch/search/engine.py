"""Search a store: nearest items of one modality, or best assets across modalities, resolved
to files and times."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xsearch.errors import UsageError
from xsearch.search.calibrate import relevance
from xsearch.store.store import Store
from xsearch.store.tables import MODALITIES

TARGETS = (*MODALITIES, "video", "all")


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # calibrated relevance: comparable across modalities (search/calibrate.py)
    cosine: float  # the raw cosine of the query and the matched item
    path: str
    modality: str  # of the matched item
    start: float | None  # seconds: an audio window, or the time of a video frame
    end: float | None
    labels: list[str]
    asset_id: int
    item_id: int
    kind: str  # of the asset: video, audio, image, text

    def as_dict(self) -> dict:
        return asdict(self)


def fuse(vectors: np.ndarray, weights: list[float] | None = None) -> np.ndarray:
    """Several query vectors -> one unit vector (their weighted mean, renormalised)."""
    w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
    v = (vectors * w[:, None]).sum(axis=0)
    norm = np.linalg.norm(v)
    if norm == 0:
        raise UsageError("the weighted queries cancel out; use other weights")
    return (v / norm).astype(np.float32)


@dataclass(frozen=True)
class SearchOptions:
    where: str | None = None  # SQL over the columns of items and assets
    exclude_assets: frozenset[int] = frozenset()  # e.g. the query file itself
    min_score: float | None = None  # calibrated relevance cutoff
    nprobe: int | None = None  # IVF indexes: inverted lists visited
    ef: int | None = None  # HNSW indexes: search breadth


def search(
    store: Store,
    query: np.ndarray,
    target: str,
    k: int = 10,
    options: SearchOptions | None = None,
) -> list[Hit]:
    """The `k` best hits for the unit vector `query`: items of one modality, or for `video`
    and `all` assets, each represented by its best-scoring item."""
    options = options or SearchOptions()
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    if k < 1:
        raise UsageError("-k must be at least 1")
    query = query.reshape(-1).astype(np.float32)
    if target in MODALITIES:
        if _count(store, target) == 0:
            raise UsageError(f"index {store.dir.name} has no {target} items")
        hits = _search_items(store, query, target, k, options)
    else:
        hits = _search_assets(store, query, target, k, options)
    if options.min_score is not None:
        hits = [h for h in hits if h.score >= options.min_score]
    return [replace(h, rank=rank) for rank, h in enumerate(hits, 1)]


def _count(store: Store, modality: str) -> int:
    index = store.faiss_index(modality)
    return 0 if index is None else index.ntotal


def _search_items(
    store: Store, query: np.ndarray, modality: str, k: int, options: SearchOptions, only=None
) -> list[Hit]:
    """The `k` nearest items of `modality` (restricted by `only`, SQL), calibrated."""
    index = store.faiss_index(modality)
    if index is None or index.ntotal == 0:
        return []
    allowed = _allowed_items(store, modality, options, only)
    n = min(k, index.ntotal if allowed is None else len(allowed))
    if n == 0:
        return []
    flat = _flat_view(index)
    if flat is not None:
        found = _exact_top(*flat, query, n, allowed)
    else:
        params = search_parameters(index, allowed, options)
        scores, ids = index.search(query[None, :], n, params=params)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    _, reference = store.reference(modality)
    scores = relevance(np.array([s for _, s in found]), reference, query)
    rows = _metadata(store, [i for i, _ in found])
    return [
        Hit(0, float(z), cosine, **rows[item_id], item_id=item_id)
        for (item_id, cosine), z in zip(found, scores)
    ]


def _search_assets(
    store: Store, query: np.ndarray, target: str, k: int, options: SearchOptions
) -> list[Hit]:
    """The `k` best assets by their best item: the frame or sound of videos for `video`,
    every modality for `all`. Calibrated scores make the modalities comparable."""
    modalities = ("image", "audio") if target == "video" else MODALITIES
    only = "kind = 'video'" if target == "video" else None
    kinds = pc.unique(store.assets.column("kind")).to_pylist()
    no_videos = target == "video" and "video" not in kinds
    if no_videos or not any(_count(store, m) for m in modalities):
        raise UsageError(f"index {store.dir.name} has no {target} items")
    n = 4 * k  # items per modality; a long file has many windows, so widen until k assets
    while True:
        hits, exhausted = [], True
        for modality in modalities:
            found = _search_items(store, query, modality, n, options, only)
            hits += found
            exhausted &= len(found) < n
        best: dict[int, Hit] = {}
        for hit in sorted(hits, key=lambda h: (-h.score, h.item_id)):
            best.setdefault(hit.asset_id, hit)
        if len(best) >= k or exhausted:
            return list(best.values())[:k]
        n *= 4


def _flat_view(index) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, vectors) of an exact inner-product index, the vectors viewed without a copy;
    None for other index types. For one query FAISS's flat search runs at about half the
    memory bandwidth on a CPU, where numpy's matrix-vector product reaches it."""
    import faiss

    outer = faiss.downcast_index(index)
    inner = faiss.downcast_index(outer.index)
    if not (isinstance(inner, faiss.IndexFlat) and inner.metric_type == faiss.METRIC_INNER_PRODUCT):
        return None
    n, d = inner.ntotal, inner.d
    vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)  # lives with `index`
    return faiss.vector_to_array(outer.id_map), vectors


def _exact_top(
    ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, n: int, allowed: np.ndarray | None
) -> list[tuple[int, float]]:
    """The `n` best (id, score) by inner product; equal scores keep index order."""
    scores = vectors @ query
    if allowed is not None:
        scores[~np.isin(ids, allowed)] = -np.inf
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]
    return [(int(ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]


def _allowed_items(
    store: Store, target: str, options: SearchOptions, only: str | None = None
) -> np.ndarray | None:
    """Item ids that pass `--where`, `only` and the exclusions, or None when nothing is
    filtered."""
    if not options.where and not options.exclude_assets and not only:
        return None
    where = f"({options.where})" if options.where else "TRUE"
    excluded = pa.array(sorted(options.exclude_assets), type=pa.int64())
    sql = (
        "SELECT item_id FROM items JOIN assets USING (asset_id) "
        "WHERE modality = ? AND asset_id NOT IN (SELECT asset_id FROM excluded) "
        f"AND ({only or 'TRUE'}) AND {where}"
    )
    with store.lock:
        con = store.sql
        con.register("excluded", pa.table({"asset_id": excluded}))
        try:
            ids = np.asarray(con.execute(sql, [target]).fetchnumpy()["item_id"])
        except duckdb.Error as e:
            first = str(e).strip().splitlines()[0]
            raise UsageError(f"bad --where {options.where!r}: {first}") from None
    return ids.astype(np.int64)


def search_parameters(index, allowed: np.ndarray | None, options: SearchOptions):
    """FAISS search parameters: an id filter, and the nprobe / efSearch of approximate types."""
    import faiss

    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
    if isinstance(inner, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=options.nprobe or inner.nprobe)
    elif isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=options.ef or inner.hnsw.efSearch)
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
        params._selector = selector  # keep it alive as long as the parameters
    return params


def _metadata(store: Store, item_ids: list[int]) -> dict[int, dict]:
    """The hits' item and asset columns, by id lookups in the generation's tables."""
    items = store.items_by_id.rows(item_ids)
    assets = store.assets_by_id.rows([i["asset_id"] for i in items])
    return {
        item["item_id"]: {
            "path": asset["path"],
            "modality": item["modality"],
            "start": item["start"],
            "end": item["end"],
            "labels": list(asset["labels"] or []),
            "asset_id": asset["asset_id"],
            "kind": asset["kind"],
        }
        for item, asset in zip(items, assets)
    }
