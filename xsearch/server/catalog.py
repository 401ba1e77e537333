"""Assets and items of one index generation, looked up by id: the server's only way from a
request to a file. A request names an integer id; the path comes from the index's own table."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from xsearch.store.lookup import RowsById
from xsearch.store.store import Store

ASSET_KINDS = ("audio", "image", "video", "text")


@dataclass(frozen=True)
class Asset:
    asset_id: int
    path: str  # absolute, as ingest recorded it
    kind: str  # audio, image, video, text
    bytes: int  # size when ingested: a file of another size is not the indexed content
    duration: float | None
    mtime: float | None = None  # modification time when ingested: likewise
    content_hash: str | None = None  # of the bytes indexed (ingest/identity.py)


@dataclass(frozen=True)
class Item:
    item_id: int
    asset_id: int
    modality: str  # audio, image, text
    start: float | None
    end: float | None
    text: str | None


class Catalog:
    """Read-only views of a store's `assets` and `items` tables, safe to share across threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._assets = RowsById(
            store.assets.select(
                ["asset_id", "path", "kind", "bytes", "duration", "mtime", "content_hash"]
            ),
            "asset_id",
        )
        self._items = RowsById(
            store.items.select(["item_id", "asset_id", "modality", "start", "end", "text"]),
            "item_id",
        )
        self._frames = self._video_frames(store)
        self.shown_from = _shown_from(store.assets.column("path").to_pylist())

    def shown_path(self, path: str) -> str:
        """`path` as hits show it: from the folder that holds every indexed file (its name
        included), so that the server's own layout is not given away."""
        return os.path.relpath(path, self.shown_from) if self.shown_from else path

    def full_path(self, shown: str) -> str:
        """A folder or file as hits show it, back to the path it stands for."""
        return os.path.normpath(os.path.join(self.shown_from, shown)) if self.shown_from else shown

    def folders(self, at_most: int = 500) -> list[list]:
        """[folder as shown, files under it] for each folder holding indexed files (with its
        subfolders), in path order; the first `at_most`."""
        counts: dict[str, int] = {}
        for path in self.store.assets.column("path").to_pylist():
            folder = os.path.dirname(self.shown_path(path))
            while folder and folder not in ("/", "."):
                counts[folder] = counts.get(folder, 0) + 1
                folder = os.path.dirname(folder)
        return [[folder, n] for folder, n in sorted(counts.items())[:at_most]]

    @staticmethod
    def _video_frames(store: Store) -> dict[int, list[float]]:
        """Asset id -> times of the video frames indexed as image items of that asset."""
        kinds = dict(
            zip(
                store.assets.column("asset_id").to_pylist(), store.assets.column("kind").to_pylist()
            )
        )
        images = store.items.filter(pc.equal(store.items.column("modality"), "image"))
        frames: dict[int, list[float]] = {}
        for asset_id, start in zip(
            images.column("asset_id").to_pylist(), images.column("start").to_pylist()
        ):
            if kinds.get(asset_id) == "video" and start is not None:
                frames.setdefault(asset_id, []).append(start)
        return {a: sorted(times) for a, times in frames.items()}

    def asset(self, asset_id: int) -> Asset | None:
        row = self._assets.row(asset_id)
        return Asset(**row) if row else None

    def item(self, item_id: int) -> Item | None:
        row = self._items.row(item_id)
        return Item(**row) if row else None

    def frame_near(self, asset_id: int, seconds: float) -> float | None:
        """The time of the asset's indexed video frame nearest to `seconds`, if it has one."""
        times = self._frames.get(asset_id)
        return min(times, key=lambda t: abs(t - seconds)) if times else None

    def counts(self) -> dict:
        """Items per modality and assets per kind."""
        items = _count(self.store.items.column("modality"))
        assets = _count(self.store.assets.column("kind"))
        return {
            "items": {m: items.get(m, 0) for m in self.store.modalities},
            "assets": {k: assets.get(k, 0) for k in ASSET_KINDS},
        }


def _shown_from(paths: list[str]) -> str | None:
    """The parent of the deepest folder holding every path: hits show paths from there."""
    if not paths:
        return None
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # relative and absolute paths mixed: shown as they are
        return None
    return os.path.dirname(common)


def _count(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column).to_pylist()
    return {c["values"]: c["counts"] for c in counts}
