"""Reading one immutable segment of a generation: its tables, vectors and FAISS indexes,
less the rows that later commits marked deleted.

A segment's files are manifest roles under `seg/<id>/`: `assets`, `items`,
`embeddings/<modality>[/...]`, `faiss/<modality>`, `ivfdata/<modality>`, and `deleted` (the
item and asset ids of the segment that later commits removed or replaced, cumulative: each
such commit writes the segment a new one). The files never change once written; a reader that
follows a newer generation keeps the readers of the segments it already had
(`Store.follow`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xsearch.store import tables
from xsearch.store.lookup import RowsById

PREFIX = "seg/"

DELETED = pa.schema([("item_id", pa.int64()), ("asset_id", pa.int64())])  # one of the two per row


def segment_role(segment_id: int, role: str) -> str:
    """The manifest role of segment `segment_id`'s file `role` (e.g. `items`, `faiss/audio`)."""
    return f"{PREFIX}{segment_id}/{role}"


def split_role(role: str) -> tuple[int | None, str]:
    """(segment id, role within the segment), or (None, role) for a global file."""
    if not role.startswith(PREFIX):
        return None, role
    number, _, local = role[len(PREFIX) :].partition("/")
    return int(number), local


def local_role(role: str) -> str:
    return split_role(role)[1]


def deleted_table(item_ids, asset_ids) -> pa.Table:
    item_ids = np.unique(np.asarray(list(item_ids), np.int64))
    asset_ids = np.unique(np.asarray(list(asset_ids), np.int64))
    nulls_i = pa.nulls(len(asset_ids), pa.int64())
    nulls_a = pa.nulls(len(item_ids), pa.int64())
    return pa.table(
        [
            pa.concat_arrays([pa.array(item_ids, pa.int64()), nulls_i]),
            pa.concat_arrays([nulls_a, pa.array(asset_ids, pa.int64())]),
        ],
        schema=DELETED,
    )


class SegmentReader:
    """One segment of a store, read on first use and kept (its files never change). `store`
    gives verified paths (`Store.path`) and where indexes are placed."""

    def __init__(self, store, segment) -> None:
        self.store = store
        self.segment = segment
        self.id = segment.id
        self._indexes: dict[str, object] = {}
        self._derived: dict[str, np.ndarray | None] = {}
        self._loading = threading.Lock()

    def role(self, role: str) -> str:
        return segment_role(self.id, role)

    def entries(self) -> dict:
        """This segment's manifest entries (role -> FileEntry): equal entries, same content."""
        prefix = segment_role(self.id, "")
        files = self.store.manifest.files
        return {r: e for r, e in files.items() if r.startswith(prefix)}

    # --- deletions ----------------------------------------------------------------------

    @cached_property
    def _deleted(self) -> tuple[np.ndarray, np.ndarray]:
        table = self.store.table(self.role("deleted"), DELETED)
        items = table.column("item_id").drop_null().to_numpy()
        assets = table.column("asset_id").drop_null().to_numpy()
        return np.sort(items), np.sort(assets)

    @property
    def deleted_items(self) -> np.ndarray:
        return self._deleted[0]

    @property
    def deleted_assets(self) -> np.ndarray:
        return self._deleted[1]

    # --- tables -------------------------------------------------------------------------

    @cached_property
    def all_items(self) -> pa.Table:
        """Every item row the segment wrote, deleted ones included."""
        return self.store.table(self.role("items"), tables.ITEMS)

    @cached_property
    def items(self) -> pa.Table:
        return _without(self.all_items, "item_id", self.deleted_items)

    @cached_property
    def assets(self) -> pa.Table:
        table = self.store.table(self.role("assets"), tables.ASSETS)
        return _without(table, "asset_id", self.deleted_assets)

    @cached_property
    def items_by_id(self) -> RowsById:
        return RowsById(self.items, "item_id")

    @cached_property
    def assets_by_id(self) -> RowsById:
        return RowsById(self.assets, "asset_id")

    def live_count(self, modality: str) -> int:
        """Live items of `modality`: from the manifest, or counted in the items of a segment
        written before counts were kept."""
        if self.segment.rows >= 0:
            return self.segment.live.get(modality, 0)
        return int(pc.sum(pc.equal(self.items.column("modality"), modality)).as_py() or 0)

    def item_ids(self, modality: str) -> np.ndarray:
        mask = pc.equal(self.items.column("modality"), modality)
        return self.items.filter(mask).column("item_id").to_numpy()

    # --- vectors ------------------------------------------------------------------------

    def embedding_roles(self, modality: str) -> list[str]:
        prefix = self.role(f"embeddings/{modality}")
        files = self.store.manifest.files
        return sorted(r for r in files if r == prefix or r.startswith(prefix + "/"))

    def stored(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the segment's live items of `modality` in storage order: the
        order of the positions of its FAISS index, in which exact search ranks ties."""
        parts = [self.store.table(role) for role in self.embedding_roles(modality)]
        if not parts:
            width = self.store.widths.get(modality, 0)
            return np.empty(0, np.int64), np.empty((0, width), np.float32)
        ids, vectors = tables.embeddings_arrays(pa.concat_tables(parts))
        live = np.isin(ids, self.item_ids(modality))
        return (ids, vectors) if live.all() else (ids[live], vectors[live])

    def stored_batches(self, modality: str, batch_size: int) -> Iterator[tuple]:
        """`stored`, `batch_size` rows at a time (a merge streams large segments)."""
        live = np.unique(self.item_ids(modality))
        return stored_batches(self.store, self.embedding_roles(modality), live, batch_size)

    def embeddings(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the segment's live items of `modality`, in id order."""
        ids, vectors = self.stored(modality)
        order = np.argsort(ids, kind="stable")
        return ids[order], vectors[order]

    def faiss_index(self, modality: str):
        """The segment's FAISS index of `modality`, loaded once and placed, or None."""
        if modality not in self._indexes:
            with self._loading:
                if modality not in self._indexes:
                    from xsearch.indexes.placement import CPU, place

                    index = self.load_faiss(modality)
                    placement = self.store.placement or CPU
                    self._indexes[modality] = None if index is None else place(index, placement)
        return self._indexes[modality]

    def load_faiss(self, modality: str):
        """A fresh copy of the segment's FAISS index of `modality` (or None), verified."""
        return self.store.read_faiss(
            self.role(f"faiss/{modality}"), self.role(f"ivfdata/{modality}")
        )

    def index_ids(self, modality: str) -> np.ndarray:
        """The item id at each position of the segment's FAISS index of `modality`."""
        key = f"ids/{modality}"
        if key not in self._derived:
            import faiss

            index = self.faiss_index(modality)
            outer = faiss.downcast_index(index) if index is not None else None
            ids = faiss.vector_to_array(outer.id_map) if outer is not None else np.empty(0)
            self._derived[key] = ids.astype(np.int64)
        return self._derived[key]

    def dead_positions(self, modality: str) -> np.ndarray | None:
        """Which positions of the FAISS index of `modality` hold deleted items (a boolean
        mask), or None when none do."""
        key = f"dead/{modality}"
        if key not in self._derived:
            dead = None
            if len(self.deleted_items):
                dead = np.isin(self.index_ids(modality), self.deleted_items)
                dead = dead if dead.any() else None
            self._derived[key] = dead
        return self._derived[key]


def stored_batches(
    store, roles: list[str], live: np.ndarray, batch_size: int, on_batch=None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of the embeddings files `roles` for the items `live` (sorted), at most
    `batch_size` rows at a time, in storage order. Pages are read as needed (a file's row
    group is never read whole); `on_batch` is told each batch's row count."""
    import pyarrow.parquet as pq

    for role in roles:
        with pq.ParquetFile(store.path(role), buffer_size=8 << 20, pre_buffer=False) as part:
            for batch in part.iter_batches(
                batch_size, columns=["item_id", "embedding"], use_threads=False
            ):
                if on_batch is not None:
                    on_batch(batch.num_rows)
                ids, vectors = tables.embeddings_arrays(pa.Table.from_batches([batch]))
                keep = _member(ids, live)
                if keep.all():  # no dead items: the batch's own memory, not a copy
                    yield ids, np.ascontiguousarray(vectors)
                elif keep.any():
                    yield ids[keep], vectors[keep]


def _member(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Which of `ids` are in `sorted_ids` (sorted, unique)."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool)
    at = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    return sorted_ids[at] == ids


def _without(table: pa.Table, column: str, ids: np.ndarray) -> pa.Table:
    if not len(ids):
        return table
    return table.filter(pc.invert(pc.is_in(table.column(column), pa.array(ids, pa.int64()))))


class SegmentedIndex:
    """The FAISS indexes of one modality over several segments seen as one, read-only: the
    live count, width, and a merged search (deleted items left out; equal scores in segment
    order). For inspection and tests; searches go through search/engine.py's `nearest`."""

    def __init__(self, parts: list[tuple[SegmentReader, object]], modality: str) -> None:
        self.parts = parts
        self.modality = modality
        self.ntotal = sum(reader.live_count(modality) for reader, _ in parts)
        self.d = parts[0][1].d

    def search(self, queries: np.ndarray, k: int):
        from xsearch.indexes.faiss_index import search_parameters

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.d)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, query in enumerate(queries):
            found: list[tuple[float, int]] = []
            for reader, index in self.parts:
                dead = reader.deleted_items
                params = search_parameters(index, excluded=dead if len(dead) else None)
                s, i = index.search(query[None, :], min(k, index.ntotal), params=params)
                found += [(float(a), int(b)) for a, b in zip(s[0], i[0]) if b >= 0]
            found = sorted(found, key=lambda hit: -hit[0])[:k]
            scores[row, : len(found)] = [f[0] for f in found]
            ids[row, : len(found)] = [f[1] for f in found]
        return scores, ids
