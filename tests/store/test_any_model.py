"""The store with models of other widths and modality sets (tests.helpers.fakes.FAKE_SPECS),
filled through the public API: its invariants, what it records, reopening, re-typing."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.fakes import FAKE_SPECS, MEDIA_ITEMS, copy_index, lacking
from tests.helpers.store import check_invariants
from xsearch.store.store import Store

SHAPES = list(FAKE_SPECS)


@pytest.mark.parametrize("shape", SHAPES)
def test_an_index_records_its_models_widths_modalities_and_recipe(fake_media_index, shape):
    spec = FAKE_SPECS[shape]
    store = fake_media_index(shape).store
    check_invariants(store)
    assert store.widths == {m: spec.dim for m in spec.modalities}
    assert set(store.modalities) == set(spec.modalities)
    assert store.manifest.model["config"] == spec.config
    assert store.recipe["window_seconds"] == 10.0
    for modality in spec.modalities:
        _, vectors = store.embeddings(modality)
        assert vectors.shape == (MEDIA_ITEMS[modality], spec.dim)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert store.faiss_index(modality).d == spec.dim
    for modality in lacking(spec):  # nothing of a modality the model cannot embed
        assert store.item_ids(modality).size == 0 and store.faiss_index(modality) is None
    assert set(store.items.column("modality").to_pylist()) == set(spec.modalities)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_reopened_index_holds_the_same_items_and_vectors(fake_media_index, shape):
    index = fake_media_index(shape)
    again = Store.open(index.dir)
    assert again.generation == index.store.generation == 1
    assert again.widths == index.store.widths and again.recipe == index.store.recipe
    assert again.items.equals(index.store.items) and again.assets.equals(index.store.assets)
    for modality in FAKE_SPECS[shape].modalities:
        ids, vectors = index.store.embeddings(modality)
        ids_again, vectors_again = again.embeddings(modality)
        assert np.array_equal(ids, ids_again) and np.array_equal(vectors, vectors_again)
        assert np.array_equal(again.item_ids(modality), index.store.item_ids(modality))


@pytest.mark.parametrize("shape", SHAPES)
def test_rebuilding_as_hnsw_keeps_what_each_item_finds(fake_media_index, shape, tmp_path):
    import faiss

    spec = FAKE_SPECS[shape]
    index = copy_index(fake_media_index(shape), spec, tmp_path)

    def neighbours(store: Store, modality: str) -> list[list[int]]:
        ids, vectors = store.embeddings(modality)
        scores, found = store.faiss_index(modality).search(vectors, len(ids))
        # ties (identical windows) may come in either order: compare as sets per score
        return [sorted(zip(np.round(s, 4).tolist(), f.tolist())) for s, f in zip(scores, found)]

    before = {m: neighbours(index.store, m) for m in spec.modalities}
    reports = index.rebuild("HNSW32")
    assert {r.modality for r in reports} == set(spec.modalities)
    store = index.store
    assert store.generation == 2
    assert store.widths == spec.widths and store.recipe == Store.open(index.dir).recipe
    for modality in spec.modalities:
        faiss_index = store.faiss_index(modality)
        assert isinstance(faiss.downcast_index(faiss.downcast_index(faiss_index).index),
                          faiss.IndexHNSW)  # fmt: skip
        assert neighbours(store, modality) == before[modality]
    check_invariants(store)
    assert index.verify().healthy
