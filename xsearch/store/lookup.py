"""Rows of an Arrow table looked up by an integer id column: a binary search over the sorted
ids, so resolving a page of hits costs microseconds instead of a SQL join over every row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class RowsById:
    def __init__(self, table: pa.Table, column: str) -> None:
        # One chunk per column: `take` on a chunked table concatenates its chunks on every
        # call (3 ms for a page of hits at 1M items in 8 chunks, 0.04 ms in one).
        self.table = table.combine_chunks()
        ids = table.column(column).to_numpy()
        self.order = np.argsort(ids, kind="stable")
        self.ids = ids[self.order]

    def positions(self, keys) -> np.ndarray:
        """Row positions of `keys` in the table, -1 where a key is absent."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(self.ids):
            return np.full(len(keys), -1)
        at = np.minimum(np.searchsorted(self.ids, keys), len(self.ids) - 1)
        return np.where(self.ids[at] == keys, self.order[at], -1)

    def rows(self, keys) -> list[dict | None]:
        """The rows of `keys`, in order (None for an absent key)."""
        positions = self.positions(keys)
        present = positions >= 0
        taken = iter(self.table.take(positions[present]).to_pylist())
        return [next(taken) if p else None for p in present]

    def row(self, key: int) -> dict | None:
        return self.rows([key])[0]
