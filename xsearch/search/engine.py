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


def search(store: Store, query: np.ndarray, target: str, k: int = 10) -> list[Hit]:
    """The `k` items of modality `target` nearest to the unit vector `query`."""
    if target not in MODALITIES:
        raise UsageError(f"unknown target {target!r}; use one of {', '.join(MODALITIES)}")
    if k < 1:
        raise UsageError("-k must be at least 1")
    index = store.faiss_index(target)
    if index is None or index.ntotal == 0:
        raise UsageError(f"index {store.dir.name} has no {target} items")
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), min(k, index.ntotal))
    found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    rows = _metadata(store, [i for i, _ in found])
    return [
        Hit(rank + 1, score, **rows[item_id], item_id=item_id)
        for rank, (item_id, score) in enumerate(found)
    ]


def _metadata(store: Store, item_ids: list[int]) -> dict[int, dict]:
    """One DuckDB query joining the hits' items to their assets."""
    con = duckdb.connect()
    try:
        con.register("items", store.items)
        con.register("assets", store.assets)
        con.register("wanted", pa.table({"item_id": pa.array(item_ids, type=pa.int64())}))
        rows = con.execute(
            'SELECT i.item_id, a.path, i.modality, i.start, i."end", a.labels, a.asset_id '
            "FROM wanted w JOIN items i USING (item_id) JOIN assets a USING (asset_id)"
        ).fetchall()
    finally:
        con.close()
    keys = ("path", "modality", "start", "end", "labels", "asset_id")
    out = {row[0]: dict(zip(keys, row[1:])) for row in rows}
    for row in out.values():
        row["labels"] = list(row["labels"] or [])
    return out
