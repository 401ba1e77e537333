"""Per-modality FAISS indexes: inner product over unit vectors, ids = the store's item ids."""

from __future__ import annotations

import faiss
import numpy as np

from xsearch.errors import UsageError

DEFAULT_FACTORY = "Flat"


def new_index(dim: int, factory: str = DEFAULT_FACTORY) -> faiss.Index:
    """An empty `IndexIDMap2` over `factory` (a FAISS index-factory string) with inner product."""
    try:
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise UsageError(f"bad index factory {factory!r}: {first}") from None
    return faiss.IndexIDMap2(inner)


def build(ids: np.ndarray, vectors: np.ndarray, factory: str = DEFAULT_FACTORY) -> faiss.Index:
    """An index holding `vectors` under `ids`, trained on them first when the type needs it."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = new_index(vectors.shape[1], factory)
    if not index.is_trained:
        index.train(vectors)
    if len(ids):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def update(
    index: faiss.Index, remove: np.ndarray, ids: np.ndarray, vectors: np.ndarray
) -> faiss.Index:
    """Remove the ids in `remove`, then add `vectors` under `ids` (in place)."""
    if len(remove):
        index.remove_ids(np.ascontiguousarray(remove, dtype=np.int64))
    if len(ids):
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32),
            np.ascontiguousarray(ids, dtype=np.int64),
        )
    return index


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
