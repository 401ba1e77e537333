"""Search one modality's index of a store and resolve hits to files and times."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import duckdb
import numpy as np
import pyarrow as pa

from xsearch.errors import UsageError
from xsearch.store.store import Store
from xsearch.store.tables import MODALITIES


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    path: str
    modality: str
    start: float | None
    end: float | None
    labels: list[str]
    asset_id: int
    item_id: int

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
    nprobe: int | None = None  # IVF indexes: inverted lists visited
    ef: int | None = None  # HNSW indexes: search breadth


def search(
    store: Store,
    query: np.ndarray,
    target: str,
    k: int = 10,
    options: SearchOptions | None = None,
) -> list[Hit]:
    """The `k` items of modality `target` nearest to the unit vector `query`."""
    options = options or SearchOptions()
    if target not in MODALITIES:
        raise UsageError(f"unknown target {target!r}; use one of {', '.join(MODALITIES)}")
    if k < 1:
        raise UsageError("-k must be at least 1")
    index = store.faiss_index(target)
    if index is None or index.ntotal == 0:
        raise UsageError(f"index {store.dir.name} has no {target} items")
    allowed = _allowed_items(store, target, options)
    n = min(k, index.ntotal if allowed is None else len(allowed))
    if n == 0:
        return []
    query = query.reshape(-1).astype(np.float32)
    flat = _flat_view(index)
    if flat is not None:
        found = _exact_top(*flat, query, n, allowed)
    else:
        params = _search_parameters(index, allowed, options)
        scores, ids = index.search(query[None, :], n, params=params)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    rows = _metadata(store, [i for i, _ in found])
    return [
        Hit(rank + 1, score, **rows[item_id], item_id=item_id)
        for rank, (item_id, score) in enumerate(found)
    ]


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


def _allowed_items(store: Store, target: str, options: SearchOptions) -> np.ndarray | None:
    """Item ids that pass `--where` and the exclusions, or None when nothing is filtered."""
    if not options.where and not options.exclude_assets:
        return None
    where = f"({options.where})" if options.where else "TRUE"
    con = store.sql
    excluded = pa.array(sorted(options.exclude_assets), type=pa.int64())
    con.register("excluded", pa.table({"asset_id": excluded}))
    sql = (
        "SELECT item_id FROM items JOIN assets USING (asset_id) "
        f"WHERE modality = ? AND asset_id NOT IN (SELECT asset_id FROM excluded) AND {where}"
    )
    try:
        ids = np.asarray(con.execute(sql, [target]).fetchnumpy()["item_id"])
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise UsageError(f"bad --where {options.where!r}: {first}") from None
    return ids.astype(np.int64)


def _search_parameters(index, allowed: np.ndarray | None, options: SearchOptions):
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
    """One DuckDB query joining the hits' items to their assets."""
    con = store.sql
    con.register("wanted", pa.table({"item_id": pa.array(item_ids, type=pa.int64())}))
    rows = con.execute(
        'SELECT i.item_id, a.path, i.modality, i.start, i."end", a.labels, a.asset_id '
        "FROM wanted w JOIN items i USING (item_id) JOIN assets a USING (asset_id)"
    ).fetchall()
    keys = ("path", "modality", "start", "end", "labels", "asset_id")
    out = {row[0]: dict(zip(keys, row[1:])) for row in rows}
    for row in out.values():
        row["labels"] = list(row["labels"] or [])
    return out
