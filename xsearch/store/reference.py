"""The reference sample of each modality: a fixed random subset of its vectors, kept with every
generation so that search can calibrate scores without reading the whole index.

The sample is a bottom-k sketch: the `REFERENCE_SIZE` live items whose ids hash lowest. It is
deterministic, and a commit that only adds items updates it from the previous sample and the
new vectors alone.
"""

from __future__ import annotations

import numpy as np

REFERENCE_SIZE = 2048
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids


def id_hash(ids: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(ids, dtype=np.int64).astype(np.uint64) * _MULTIPLIER


def bottom_k(ids: np.ndarray, vectors: np.ndarray):
    """The `REFERENCE_SIZE` items of lowest id hash, in id order."""
    size = REFERENCE_SIZE
    if len(ids) > size:
        keep = np.argpartition(id_hash(ids), size - 1)[:size]
        ids, vectors = ids[keep], vectors[keep]
    order = np.argsort(ids, kind="stable")
    return ids[order], np.ascontiguousarray(vectors[order], dtype=np.float32)


def updated_sample(previous, dead: np.ndarray, new_ids: np.ndarray, new_vectors: np.ndarray):
    """The sample after removing `dead` and adding the new items; None when removals took items
    out of a full sample, whose replacements only the full set of vectors can tell."""
    old_ids, old_vectors = previous
    keep = ~np.isin(old_ids, dead)
    if not keep.all() and len(old_ids) >= REFERENCE_SIZE:
        return None
    ids = np.concatenate([old_ids[keep], new_ids])
    dim = new_vectors.shape[1] if len(new_ids) else old_vectors.shape[1]
    vectors = np.concatenate([old_vectors[keep].reshape(-1, dim), new_vectors.reshape(-1, dim)])
    return bottom_k(ids, vectors)
