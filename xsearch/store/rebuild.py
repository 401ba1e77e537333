"""Re-deriving FAISS indexes from the Parquet embeddings, the store's source of truth."""

from __future__ import annotations

from pathlib import Path

from xsearch.store.store import Store, Writer
from xsearch.store.tables import MODALITIES


def rebuild_indexes(directory: Path, factory: str = "Flat") -> Store:
    """Publish a generation whose FAISS files are built afresh with `factory`."""
    from xsearch.indexes.faiss_index import new_index

    new_index(8, factory)  # a bad factory string fails here, before any work
    manifest = Store.open(directory).manifest
    with Writer(directory, manifest.model if manifest else {}) as writer:
        return writer.rebuild({m: writer.store.embeddings(m) for m in MODALITIES}, factory)
