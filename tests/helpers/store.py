"""Shared test helpers (store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xsearch.store.reference import bottom_k
from xsearch.store.store import Changes, Store, Writer

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}


def unit(n: int, seed: int = 0, dim: int = 1024) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def add_asset(
    writer: Writer,
    changes: Changes,
    path: str,
    n_audio: int,
    seed: int = 0,
    dim: int = 1024,
    modality: str = "audio",
) -> int:
    """Add one asset of `n_audio` items of `modality` (audio unless told), `dim`-wide."""
    asset = writer.allocate_asset()
    changes.new_assets.append(
        dict(asset_id=asset, path=path, content_hash=f"h-{path}", kind="audio", bytes=1,
             mtime=0.0, duration=10.0 * n_audio, labels=[])
    )  # fmt: skip
    ids = writer.allocate_items(n_audio)
    for k, item in enumerate(ids):
        changes.new_items.append(
            dict(item_id=int(item), asset_id=asset, modality=modality, start=10.0 * k,
                 end=10.0 * (k + 1), text=None)
        )  # fmt: skip
    changes.add_vectors(modality, ids, unit(n_audio, seed, dim))
    return asset


def commit_asset(directory: Path, path: str, n_audio: int, seed: int = 0) -> Store:
    """Commit one asset of `n_audio` audio items to the index at `directory`."""
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, path, n_audio, seed)
        return writer.commit(changes)


def check_invariants(store: Store) -> None:
    for modality in store.modalities:
        ids = store.item_ids(modality)
        assert len(set(ids)) == len(ids)
        index = store.faiss_index(modality)
        if index is None:
            assert len(ids) == 0
            continue
        assert index.ntotal == len(ids)
        emb_ids, vectors = store.embeddings(modality)
        assert sorted(emb_ids) == sorted(ids)
        scores, found = index.search(vectors, 1)
        # each item is its own nearest neighbour, up to ties with identical vectors
        assert np.isin(found[:, 0], emb_ids).all()
        assert np.allclose(scores[:, 0], (vectors * vectors).sum(axis=1), atol=1e-4)
        # the kept reference sample is the bottom-k sketch of the live items
        assert (len(ids) == 0) == (store.path(f"reference/{modality}") is None)
        ref_ids, ref_vectors = store.reference(modality)
        want_ids, want_vectors = bottom_k(emb_ids, vectors)
        assert ref_ids.tolist() == want_ids.tolist()
        assert np.array_equal(ref_vectors, want_vectors)
