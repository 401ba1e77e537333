"""Search a store: nearest items of one modality, or best assets across modalities, resolved
to files and times."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xsearch.errors import ParameterError, UsageError
from xsearch.indexes import placement
from xsearch.search.calibrate import relevance
from xsearch.search.hit import Hit
from xsearch.search.targets import check_target
from xsearch.store.store import Store
from xsearch.store.tables import MODALITIES


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
    k_factor: float | None = None  # refined indexes: candidates re-ranked exactly, per hit
    # hits of one file at most (its frames, windows or texts); None: DEFAULT_PER_FILE
    per_file: int | None = None
    # a modality's hits as files: the `k` best files by their best item, each followed by its
    # next best (up to `per_file`), sharing its rank; as `video` and `all` always are
    by_file: bool = False


# The hits one file may give by default, per target: one frame per video, so that one video's
# frames cannot fill the page; every window of a long recording, as each is a place in it;
# one item per file for `video` and `all`, which rank files by their best moment.
DEFAULT_PER_FILE = {"image": 1, "video": 1, "all": 1}


# One unit vector for every modality searched, or one per modality (a model of several
# spaces compares each modality in its own: xsearch/search/spaces.py)
Query = np.ndarray | Mapping[str, np.ndarray]


def searched_modalities(target: str) -> tuple[str, ...]:
    """The modalities whose items a search of `target` ranks."""
    return {"video": ("image", "audio"), "all": MODALITIES}.get(target, (target,))


def _vector(query: Query, modality: str) -> np.ndarray:
    return query[modality] if isinstance(query, Mapping) else query


def search(
    store: Store,
    query: Query,
    target: str,
    k: int = 10,
    options: SearchOptions | None = None,
) -> list[Hit]:
    """The `k` best hits for the unit vector `query` (or one per modality: see `Query`):
    items of one modality, at most `per_file` of each file; or for `video` and `all` (and a
    modality `by_file`) the `k` best files by their best item (their moment), each followed
    by its next best items up to `per_file`, with the file's rank."""
    options = options or SearchOptions()
    check_target(target, store.modalities)
    if k < 1:
        raise ParameterError("k", "must be at least 1")
    if options.per_file is not None and options.per_file < 1:
        raise ParameterError("per_file", "must be at least 1")
    if isinstance(query, Mapping):
        query = {m: np.asarray(v, np.float32).reshape(-1) for m, v in query.items()}
    else:
        query = np.asarray(query, np.float32).reshape(-1)
    if target in MODALITIES and _count(store, target) == 0:
        raise UsageError(f"index {store.dir.name} has no {target} items")
    items = target in MODALITIES and not options.by_file
    if items:
        per_file = options.per_file or DEFAULT_PER_FILE.get(target)
        hits = _search_items_per_file(store, query, target, k, options, per_file)
    else:
        hits = _search_assets(store, query, target, k, options, options.per_file or 1)
    if options.min_score is not None:
        hits = [h for h in hits if h.score >= options.min_score]
    if items:
        return [replace(h, rank=rank) for rank, h in enumerate(hits, 1)]
    # a file's moments share its rank: the rank is the file's place
    places = {
        asset: place for place, asset in enumerate(dict.fromkeys(h.asset_id for h in hits), 1)
    }
    return [replace(h, rank=places[h.asset_id]) for h in hits]


def _count(store: Store, modality: str) -> int:
    return store.count(modality)


def _search_items(
    store: Store,
    query: Query,
    modality: str,
    k: int,
    options: SearchOptions,
    only=None,
    allowed: np.ndarray | None = None,
) -> list[Hit]:
    """The `k` nearest items of `modality` (restricted by `only`, SQL, or to the ids
    `allowed`, already filtered), calibrated."""
    query = _vector(query, modality)
    if not store.count(modality):
        return []
    if allowed is None:
        allowed = _allowed_items(store, modality, options, only)
    n = min(k, store.count(modality) if allowed is None else len(allowed))
    if n == 0:
        return []
    found = nearest(store, query, modality, n, allowed, options)
    _, reference = store.reference(modality)
    scores = relevance(np.array([s for _, s in found]), reference, query)
    rows = _metadata(store, [i for i, _ in found])
    return [
        Hit(0, float(z), cosine, **rows[item_id], item_id=item_id)
        for (item_id, cosine), z in zip(found, scores)
    ]


def nearest(
    store: Store,
    query: np.ndarray,
    modality: str,
    n: int,
    allowed: np.ndarray | None = None,
    options: SearchOptions | None = None,
) -> list[tuple[int, float]]:
    """The `n` best (item id, score) of `modality` over every segment, deleted items left
    out: each segment's best, merged. Equal scores rank in segment order, then in index
    order, which is the order one index of the same items would give."""
    options = options or SearchOptions()
    found: list[tuple[int, float]] = []
    for reader, index in store.indexes(modality):
        found += _segment_top(store, reader, index, query, modality, n, allowed, options)
    return sorted(found, key=lambda hit: -hit[1])[:n]  # stable: ties keep that order


def _segment_top(store, reader, index, query, modality, n, allowed, options):
    """The `n` best (id, score) of one segment's index, ties in index order."""
    dead = reader.deleted_items
    if placement.is_gpu(index):  # no id filter on the GPU: filtered after, widened
        if allowed is not None:  # its exact fallback must stay within the segment
            allowed = np.intersect1d(allowed, reader.index_ids(modality))
        if len(dead):
            pool = reader.index_ids(modality) if allowed is None else allowed
            allowed = np.setdiff1d(pool, dead)
        return _gpu_top(store, index, query, min(n, index.ntotal), allowed, options)
    if (flat := _flat_view(index)) is not None:
        return _exact_top(*flat, query, n, allowed, reader.dead_positions(modality))
    params = search_parameters(index, allowed, options, excluded=dead if len(dead) else None)
    scores, ids = index.search(query[None, :], min(n, index.ntotal), params=params)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def _search_items_per_file(
    store: Store, query: Query, modality: str, k: int, options: SearchOptions, per_file
) -> list[Hit]:
    """`_search_items`, at most `per_file` hits of one file (None: no limit): the search
    widens until `k` hits pass or the modality is exhausted."""
    if per_file is None:
        return _search_items(store, query, modality, k, options)
    n = k
    while True:
        found = _search_items(store, query, modality, n, options)
        hits = _per_file(found, per_file)
        if len(hits) >= k or len(found) < n:
            return hits[:k]
        n *= 4


def _per_file(hits: list[Hit], per_file: int) -> list[Hit]:
    """The hits in their order, at most `per_file` of each asset."""
    seen: dict[int, int] = {}
    kept = []
    for hit in hits:
        seen[hit.asset_id] = seen.get(hit.asset_id, 0) + 1
        if seen[hit.asset_id] <= per_file:
            kept.append(hit)
    return kept


def _search_assets(
    store: Store, query: Query, target: str, k: int, options: SearchOptions, per_file: int
) -> list[Hit]:
    """The `k` best assets by their best item: the frame or sound of videos for `video`,
    every modality for `all`, the target's items for a modality. Calibrated scores make the
    modalities comparable. Each asset's best item comes with its next best, up to `per_file`
    items of that asset."""
    modalities = [m for m in searched_modalities(target) if m in store.modalities]
    only = "kind = 'video'" if target == "video" else None
    kinds = pc.unique(store.assets.column("kind")).to_pylist()
    no_videos = target == "video" and "video" not in kinds
    if no_videos or not any(_count(store, m) for m in modalities):
        raise UsageError(f"index {store.dir.name} has no {target} items")
    n = 4 * k * per_file  # items per modality; a long file has many windows: widen until k
    while True:
        hits, exhausted = [], True
        for modality in modalities:
            found = _search_items(store, query, modality, n, options, only)
            hits += found
            exhausted &= len(found) < n
        moments: dict[int, list[Hit]] = {}
        for hit in sorted(hits, key=lambda h: (-h.score, h.item_id)):
            moments.setdefault(hit.asset_id, []).append(hit)
        if len(moments) >= k or exhausted:
            best = list(moments.values())[:k]
            if not exhausted and any(len(found) < per_file for found in best):
                best = _next_moments(store, query, modalities, best, per_file, options, only)
            return [hit for asset in best for hit in asset[:per_file]]
        n *= 4


def _next_moments(store, query, modalities, best, per_file, options, only) -> list[list[Hit]]:
    """Each chosen file's best items up to `per_file`, searched among its own items: the
    search that chose the files may have reached only some of a file's items."""
    passed = {m: _allowed_items(store, m, options, only) for m in modalities}
    items = store.items
    out = []
    for found in best:
        if len(found) >= per_file:
            out.append(found)
            continue
        mine = items.filter(pc.equal(items.column("asset_id"), found[0].asset_id))
        hits: list[Hit] = []
        for modality in modalities:
            ids = mine.filter(pc.equal(mine.column("modality"), modality)).column("item_id")
            ids = ids.to_numpy()
            if (allowed := passed[modality]) is not None:
                ids = np.intersect1d(ids, allowed)
            if len(ids):
                hits += _search_items(store, query, modality, per_file, options, allowed=ids)
        out.append(sorted(hits, key=lambda h: (-h.score, h.item_id))[:per_file])
    return out


def _flat_view(index) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, vectors) of an exact inner-product index, the vectors viewed without a copy;
    None for other index types. For one query FAISS's flat search runs at about half the
    memory bandwidth on a CPU, where numpy's matrix-vector product reaches it."""
    from xsearch.indexes.faiss_index import flat_vectors

    return flat_vectors(index)


def _exact_top(
    ids: np.ndarray,
    vectors: np.ndarray,
    query: np.ndarray,
    n: int,
    allowed: np.ndarray | None,
    dead: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The `n` best (id, score) by inner product, leaving out positions `dead` (a mask) and
    ids not `allowed`; equal scores keep index order."""
    scores = vectors @ query
    if allowed is not None:
        scores[~np.isin(ids, allowed)] = -np.inf
    if dead is not None:
        scores[dead] = -np.inf
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]
    return [(int(ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]


EXACT_CHUNK = 16_384  # stored vectors read at a time by the exact fallback (64 MB at 1024-d)


def _gpu_top(
    store: Store,
    index,
    query: np.ndarray,
    n: int,
    allowed: np.ndarray | None,
    options: SearchOptions,
) -> list[tuple[int, float]]:
    """The `n` best (id, score) of a GPU-placed index. GPU FAISS takes no id filter, so
    `placement.search` filters its results, widening up to the GPU's largest k; a filter so
    selective that fewer than `n` allowed items come back from that is answered exactly over
    the allowed items' stored vectors instead."""
    found = placement.search(index, query, n, allowed, options.nprobe)
    if allowed is None or len(found) >= n:
        return found
    return _exact_over_stored(store, query, n, allowed)


def _exact_over_stored(
    store: Store, query: np.ndarray, n: int, allowed: np.ndarray
) -> list[tuple[int, float]]:
    """The `n` best (id, score) of the items `allowed` by exact inner product with their
    stored vectors, read a chunk at a time; equal scores in id order."""
    ids = np.unique(allowed)
    best: list[tuple[int, float]] = []
    for start in range(0, len(ids), EXACT_CHUNK):
        part = ids[start : start + EXACT_CHUNK]
        vectors = store.vectors(part.tolist())
        best += _exact_top(part, vectors, query, min(n, len(part)), None)
        best = sorted(best, key=lambda hit: -hit[1])[:n]  # stable: ties stay in id order
    return best


def _allowed_items(
    store: Store, target: str, options: SearchOptions, only: str | None = None
) -> np.ndarray | None:
    """Item ids that pass the `where` filter, `only` and the exclusions, or None when nothing is
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
    import duckdb  # loaded with the store's SQL view: only filtered searches need it

    # A connection of its own (a cursor: the same database, its own views), so that filters
    # run side by side, each interrupted past its time (user SQL can be made to run for hours)
    with store.lock:
        con = store.sql.cursor()
    seconds = where_seconds()
    timer = threading.Timer(seconds, con.interrupt)
    try:
        con.register("items", store.items)
        con.register("assets", store.assets)
        con.register("excluded", pa.table({"asset_id": excluded}))
        timer.start()
        ids = np.asarray(con.execute(sql, [target]).fetchnumpy()["item_id"])
    except duckdb.InterruptException:
        raise ParameterError(
            "where", f"the filter ran longer than {seconds:g} s (XSEARCH_WHERE_SECONDS)"
        ) from None
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise ParameterError("where", f"bad filter {options.where!r}: {first}") from None
    finally:
        timer.cancel()
        con.close()
    return ids.astype(np.int64)


WHERE_SECONDS = 10.0  # a filter's time, unless XSEARCH_WHERE_SECONDS says otherwise


def where_seconds() -> float:
    """How long one `where` filter may run (the command line, the API and the server alike)."""
    value = os.environ.get("XSEARCH_WHERE_SECONDS", "")
    try:
        seconds = float(value) if value.strip() else WHERE_SECONDS
    except ValueError:
        raise UsageError(f"XSEARCH_WHERE_SECONDS={value!r}: give a number of seconds") from None
    if not seconds > 0:
        raise UsageError(f"XSEARCH_WHERE_SECONDS={value!r}: give a positive number of seconds")
    return seconds


def check_where(store: Store, where: str) -> None:
    """ParameterError now for a `where` filter that does not parse or names unknown columns:
    it is planned against the tables (`EXPLAIN`), not run, so it costs nothing at any size."""
    import duckdb

    sql = f"EXPLAIN SELECT item_id FROM items JOIN assets USING (asset_id) WHERE ({where})"
    with store.lock:
        try:
            store.sql.execute(sql)
        except duckdb.Error as e:
            first = str(e).strip().splitlines()[0]
            raise ParameterError("where", f"bad filter {where!r}: {first}") from None


def search_parameters(
    index, allowed: np.ndarray | None, options: SearchOptions, excluded: np.ndarray | None = None
):
    """FAISS search parameters for `index` with the options' breadth (faiss_index.py)."""
    from xsearch.indexes.faiss_index import search_parameters as parameters

    return parameters(index, allowed, excluded, options.nprobe, options.ef, options.k_factor)


def _metadata(store: Store, item_ids: list[int]) -> dict[int, dict]:
    """The hits' item and asset columns, by id lookups in the generation's tables."""
    items = _present(store, "item", item_ids, store.items_by_id.rows(item_ids))
    asset_ids = [i["asset_id"] for i in items]
    assets = _present(store, "asset", asset_ids, store.assets_by_id.rows(asset_ids))
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


def _present(store: Store, what: str, ids: list[int], rows: list[dict | None]) -> list[dict]:
    """The rows, or StoreCorrupt naming the first id a FAISS index or table holds without
    its row (verify/repair find and fix such a store)."""
    from xsearch.store.manifest import StoreCorrupt, repair_hint

    missing = [i for i, row in zip(ids, rows) if row is None]
    if missing:
        raise StoreCorrupt(
            f"{what} {missing[0]} has no row in {store.dir.name}'s tables; "
            + repair_hint(store.dir)
        )
    return [row for row in rows if row is not None]
