"""What a commit and a first search cost: work bounded by the commit, not by its removals, and
one load of each FAISS index however many threads ask for it at once."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers.store import MODEL, add_asset, check_invariants
from xsearch.indexes import placement
from xsearch.store.segments import SegmentReader
from xsearch.store.store import Changes, Store, Writer


@pytest.mark.parametrize("removals", [20, 200])
def test_a_commit_reads_the_item_ids_a_bounded_number_of_times(tmp_path, monkeypatch, removals):
    """Each removed item used to rebuild the set of its modality's ids: quadratic."""
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        assets = [add_asset(writer, changes, f"/m/{n}.wav", 1, seed=n, dim=16) for n in range(250)]
        writer.commit(changes)

    calls = []
    item_ids = Store.item_ids
    monkeypatch.setattr(Store, "item_ids", lambda self, m: calls.append(m) or item_ids(self, m))
    with Writer(directory, MODEL) as writer:
        store = writer.commit(Changes(removed_assets=set(assets[:removals])))
    assert len(calls) <= 2 * len(store.modalities), len(calls)
    monkeypatch.undo()
    assert len(store.item_ids("audio")) == 250 - removals
    check_invariants(Store.open(directory))


def test_threads_asking_for_an_index_at_once_load_and_place_it_once(tmp_path, monkeypatch):
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.wav", 5, dim=16)
        writer.commit(changes)
    store = Store.open(directory)  # fresh: nothing loaded yet, as after a refresh

    loads, placements = [], []
    load_faiss, place = SegmentReader.load_faiss, placement.place

    def slow_load(self, modality):
        loads.append(modality)
        time.sleep(0.2)  # a large index: long enough for every thread to arrive
        return load_faiss(self, modality)

    def counted_place(index, where=placement.CPU):
        placements.append(index)
        return place(index, where)

    monkeypatch.setattr(SegmentReader, "load_faiss", slow_load)
    monkeypatch.setattr(placement, "place", counted_place)
    start = threading.Barrier(8)
    got = []

    def ask():
        start.wait()
        got.append(store.faiss_index("audio"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["audio"] and len(placements) == 1
    assert len(got) == 8 and all(index is got[0] for index in got)
    assert got[0].ntotal == 5
