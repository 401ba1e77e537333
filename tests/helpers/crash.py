"""Shared test helpers (crash)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.store import check_invariants
from xsearch.store.store import Store

# Every write, fsync and rename of a commit, in the order they happen.
STEPS = [
    "write-assets",
    "write-items",
    "write-embeddings-image",
    "write-faiss-image",
    "write-reference-image",
    "write-embeddings-audio",
    "write-faiss-audio",
    "write-reference-audio",
    "write-embeddings-text",
    "write-faiss-text",
    "write-reference-text",
    "fsync-data",
    "manifest-written",
    "manifest-renamed",
    "publish",
]


PUBLISHED_FROM = STEPS.index("manifest-renamed")


def snapshot(directory: Path) -> dict:
    """Everything a generation promises, in comparable form (after checking invariants)."""
    store = Store.open(directory)
    check_invariants(store)
    items = store.items.select(["item_id", "asset_id", "modality", "start", "end"]).to_pylist()
    assets = store.assets.select(["asset_id", "path", "content_hash"]).to_pylist()
    return {
        "generation": store.generation,
        "assets": sorted(assets, key=lambda a: a["asset_id"]),
        "items": sorted(items, key=lambda i: i["item_id"]),
        "ntotal": {
            m: (idx.ntotal if (idx := store.faiss_index(m)) is not None else 0)
            for m in store.modalities
        },
    }
