"""The segmented store: commits write only what they add, searches over segments equal one
index's, merges keep that and drop deleted rows, format-1 indexes open and upgrade."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.store import MODEL, add_asset, check_invariants, unit
from xsearch.search.engine import nearest, search
from xsearch.store.draft import MergePolicy
from xsearch.store.manifest import Segment
from xsearch.store.store import Changes, Store, Writer, full_merge
from xsearch.store.verify import verify_index

DIM = 16
FORMAT1 = Path(__file__).parent.parent / "data" / "store_format1"


def _commit(directory: Path, n_files: int, seed: int, removed=(), renamed=None) -> Store:
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        for f in range(n_files):
            add_asset(writer, changes, f"/m/{seed}-{f}.wav", 3, seed * 100 + f, DIM)
        changes.removed_assets.update(removed)
        changes.renamed.update(renamed or {})
        return writer.commit(changes)


def _files_of(store: Store) -> dict:
    return {role: entry for role, entry in store.manifest.files.items()}


def test_a_commit_rewrites_nothing_an_older_generation_wrote(tmp_path):
    directory = tmp_path / "idx"
    first = _commit(directory, 5, 1)
    before = _files_of(first)
    second = _commit(directory, 1, 2, removed={0}, renamed={1: "/m/moved.wav"})
    after = _files_of(second)
    new = {r: e for r, e in after.items() if before.get(r) != e}
    # what stayed is the same file, untouched; everything new is named after generation 2
    assert all(after[r] == e for r, e in before.items() if r in after and r not in new)
    assert all("-g2." in e.path for e in new.values()), new
    assert {r for r in new if r.startswith("seg/1/")} == {"seg/1/deleted"}
    assert [s.id for s in second.manifest.segments] == [1, 2]
    assert second.manifest.segments[0].live == {"audio": 12}  # 15 - the 3 of asset 0
    assert second.count("audio") == 15
    assert "/m/moved.wav" in second.assets.column("path").to_pylist()
    assert 0 not in second.assets.column("asset_id").to_pylist()
    check_invariants(Store.open(directory))
    assert verify_index(directory).healthy


def _tied_store(directory: Path) -> Store:
    """Five commits; some vectors repeated across segments (ties), some items deleted."""
    store = None
    for seed in range(5):
        with Writer(directory, MODEL) as writer:
            changes = Changes()
            for f in range(4):
                asset = add_asset(writer, changes, f"/m/{seed}-{f}.wav", 3, seed * 10 + f, DIM)
                if f == 0:  # the same vectors in every commit: equal scores across segments
                    ids = changes.new_vectors["audio"][-1][0]
                    changes.new_vectors["audio"][-1] = (ids, unit(3, 999, DIM))
                assert asset >= 0
            if seed == 3:
                changes.removed_assets.update({1, 6})
            store = writer.commit(changes)
    return store


def _one_index_order(store: Store, query: np.ndarray, n: int) -> list[tuple[int, float]]:
    """What one exact index of the same items, added in the same order, returns."""
    ids = np.concatenate([r.stored("audio")[0] for r in store.segments])
    vectors = np.concatenate([r.stored("audio")[1] for r in store.segments])
    scores = vectors @ query
    order = np.lexsort((np.arange(len(ids)), -scores))[:n]
    return [(int(ids[i]), float(scores[i])) for i in order]


def test_exact_search_over_segments_equals_one_index_ties_included(tmp_path):
    store = _tied_store(tmp_path / "idx")
    assert len(store.manifest.segments) == 5
    tie = unit(3, 999, DIM)[0]  # the repeated vector: five items score 1.0 together
    for query in [tie, *unit(4, 5, DIM)]:
        for n in (1, 4, 9, store.count("audio")):
            got, want = nearest(store, query, "audio", n), _one_index_order(store, query, n)
            assert [i for i, _ in got] == [i for i, _ in want]
            # BLAS may sum a block of rows in another order than all rows: last-bit apart
            assert np.allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-6)
    found = [i for i, _ in nearest(store, tie, "audio", 5)]
    assert len(found) == 5 and found == sorted(found)  # ties in segment, then index order
    merged = Writer(store.dir, MODEL)
    with merged:
        merged.compact(full_merge())
    compacted = Store.open(store.dir)
    assert len(compacted.manifest.segments) == 1
    assert compacted.manifest.segments[0].deleted == 0
    for query in [tie, *unit(4, 5, DIM)]:
        got, want = nearest(compacted, query, "audio", 12), nearest(store, query, "audio", 12)
        assert [i for i, _ in got] == [i for i, _ in want]
    assert verify_index(store.dir).healthy


def test_deleted_items_are_never_found(tmp_path):
    store = _tied_store(tmp_path / "idx")
    gone = set(store.manifest.segments[0].live) and {3, 4, 5, 18, 19, 20}
    everything = [i for i, _ in nearest(store, unit(1, 3, DIM)[0], "audio", 1000)]
    assert len(everything) == store.count("audio") == 60 - 6
    assert not gone & set(everything)
    hits = search(store, unit(1, 3, DIM)[0], "audio", k=100)
    assert not {h.asset_id for h in hits} & {1, 6}


def test_filters_work_across_segments(tmp_path):
    store = _tied_store(tmp_path / "idx")
    from xsearch.search.engine import SearchOptions

    hits = search(
        store, unit(1, 3, DIM)[0], "audio", k=50, options=SearchOptions(where="path LIKE '%-2.wav'")
    )
    assert hits and all(h.path.endswith("-2.wav") for h in hits)
    assert len({h.path for h in hits}) == 4  # the fifth, asset 6, was removed


def test_the_merge_policy_merges_runs_of_a_tier_and_bounds_the_count():
    policy = MergePolicy(factor=10, max_segments=20, floor=1000)
    small = [Segment(i, rows=2000, live={"audio": 2000}) for i in range(9)]
    assert policy.pick(small) is None
    assert policy.pick([*small, Segment(9, rows=2000, live={"audio": 2000})]) == (0, 10)
    big = [Segment(100 + i, rows=20_000, live={"audio": 20_000}) for i in range(9)]
    assert policy.pick(big + small) is None  # two tiers, nine each: nothing yet
    many = [Segment(i, rows=10 ** (1 + i % 4) * 3, live={"audio": 1}) for i in range(21)]
    start, end = policy.pick(many)
    assert end - start == 10
    half_deleted = Segment(1, rows=100, live={"audio": 40})
    assert policy.pick([half_deleted]) == (0, 1)


def test_ingest_commits_stay_bounded_in_segments(tmp_path):
    directory = tmp_path / "idx"
    for seed in range(25):
        _commit(directory, 1, seed)
        with Writer(directory, MODEL) as writer:
            writer.compact(MergePolicy(factor=4, max_segments=6, floor=1))
    store = Store.open(directory)
    assert len(store.manifest.segments) <= 6
    assert store.count("audio") == 75
    check_invariants(store)
    assert verify_index(directory).healthy


def test_opening_reads_the_manifest_only_and_a_search_reads_what_it_touches(tmp_path):
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.wav", 3, 1, DIM)
        add_asset(writer, changes, "/m/t.txt", 2, 2, DIM, modality="text")
        writer.commit(changes)
    store = Store.open(directory)
    assert store.count("audio") == 3 and store._verified == set()
    nearest(store, unit(1, 4, DIM)[0], "audio", 2)
    assert not any("text" in role for role in store._verified)


def test_a_follower_reads_only_the_segments_it_did_not_have(tmp_path):
    directory = tmp_path / "idx"
    _commit(directory, 3, 1)
    reader = Store.open(directory)
    nearest(reader, unit(1, 4, DIM)[0], "audio", 2)
    old_segment = reader.segments[0]
    _commit(directory, 1, 2)
    newer = Store.open(directory)
    followed = reader.follow(newer.manifest)
    assert followed.segments[0] is old_segment  # loaded once: its index is not read again
    assert "seg/1/faiss/audio" in followed._verified
    assert nearest(followed, unit(1, 4, DIM)[0], "audio", 5) == nearest(
        newer, unit(1, 4, DIM)[0], "audio", 5
    )


def test_a_rebuilt_ivf_index_keeps_its_quantizer_for_new_segments(tmp_path):
    import faiss

    from xsearch.indexes.faiss_index import ivf_of
    from xsearch.store.rebuild import rebuild_indexes

    directory = tmp_path / "idx"
    for seed in range(3):
        _commit(directory, 20, seed)
    rebuild_indexes(directory, "IVF4,Flat")
    _commit(directory, 2, 9)
    store = Store.open(directory)
    centroids = []
    for _, index in store.indexes("audio"):
        ivf = ivf_of(index)
        assert ivf is not None
        centroids.append(faiss.vector_to_array(faiss.downcast_index(ivf.quantizer).codes))
    assert len(centroids) == 4 and all(np.array_equal(c, centroids[0]) for c in centroids)
    with Writer(directory, MODEL) as writer:
        writer.compact(full_merge())
    merged = Store.open(directory)
    assert ivf_of(merged.faiss_index("audio")) is not None
    assert merged.count("audio") == 3 * 60 + 6
    assert verify_index(directory).healthy


@pytest.fixture
def format1(tmp_path) -> Path:
    directory = tmp_path / "idx"
    shutil.copytree(FORMAT1 / "idx", directory)
    return directory


def test_an_index_in_format_1_opens_and_searches_as_before(format1):
    expected = json.loads((FORMAT1 / "expected.json").read_text())
    store = Store.open(format1)
    assert store.manifest.format == 1 and len(store.manifest.segments) == 1
    assert store.items.num_rows == expected["items"]
    assert sorted(store.assets.column("path").to_pylist()) == expected["assets"]
    for target in ("audio", "text"):
        for query, hits in zip(expected["queries"], expected["hits"][target]):
            got = search(store, np.array(query, np.float32), target, k=6)
            assert [[h.item_id, h.path] for h in got] == [[i, p] for i, _, p in hits]
            assert np.allclose([h.score for h in got], [s for _, s, _ in hits], atol=1e-6)
    assert verify_index(format1).healthy


def test_the_first_commit_upgrades_a_format_1_index_without_rewriting_it(format1):
    before = {p.name: p.stat().st_mtime_ns for p in (format1 / "data").iterdir()}
    with Writer(format1, json.loads((format1 / "manifest.json").read_text())["model"]) as w:
        changes = Changes()
        asset = w.allocate_asset()
        changes.new_assets.append(
            dict(asset_id=asset, path="/media/new.wav", content_hash="new", kind="audio",
                 bytes=1, mtime=0.0, duration=10.0, labels=[])
        )  # fmt: skip
        ids = w.allocate_items(1)
        changes.new_items.append(
            dict(item_id=int(ids[0]), asset_id=asset, modality="audio", start=0.0, end=10.0,
                 text=None)
        )  # fmt: skip
        changes.add_vectors("audio", ids, unit(1, 3, 8))
        store = w.commit(changes)
    assert store.manifest.format == 2
    assert json.loads((format1 / "manifest.json").read_text())["format"] == 2
    old_files = {e.path.split("/")[-1] for r, e in store.manifest.files.items() if "seg/3/" in r}
    assert old_files and all(before.get(name) for name in old_files)  # used as they are
    assert store.manifest.segments[0].live == {"audio": 22, "text": 11}
    check_invariants(Store.open(format1))
    assert verify_index(format1).healthy


def test_index_upgrade_records_format_2(format1):
    from xsearch.api.index import open_index

    index = open_index(format1.name, root=format1.parent)
    assert index.upgrade() is True
    assert index.upgrade() is False
    assert Store.open(format1).manifest.format == 2
    assert verify_index(format1).healthy


def test_a_format_1_on_disk_ivf_index_gets_segments_of_its_type(tmp_path):
    """Written by the format-1 xsearch and rebuilt as IVF4,Flat on disk: it answers as it did,
    and its first commit adds a segment with the same trained quantizer, lists on disk."""
    import faiss

    from xsearch.indexes.faiss_index import ivf_of, on_disk_lists
    from xsearch.search.engine import SearchOptions

    directory = tmp_path / "idx"
    shutil.copytree(FORMAT1 / "ivf_on_disk", directory)
    expected = json.loads((FORMAT1 / "ivf_expected.json").read_text())
    store = Store.open(directory)
    for query, hits in zip(expected["queries"], expected["hits"]):
        got = search(store, np.array(query, np.float32), "audio", 5, SearchOptions(nprobe=4))
        assert [h.item_id for h in got] == [i for i, _ in hits]
    with Writer(directory, store.manifest.model) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/new.wav", 3, seed=4, dim=8)
        writer.commit(changes)
    store = Store.open(directory)
    assert store.manifest.format == 2 and "trained/audio" in store.manifest.files
    quantizers = []
    for _, index in store.indexes("audio"):
        assert on_disk_lists(index) is not None
        quantizers.append(faiss.downcast_index(ivf_of(index).quantizer).reconstruct_n(0, 4))
    assert len(quantizers) == 2 and np.array_equal(quantizers[0], quantizers[1])
    new = store.item_ids("audio").max()
    top = nearest(store, store.vectors([int(new)])[0], "audio", 1, options=SearchOptions(nprobe=4))
    assert top[0][0] == new
    assert verify_index(directory).healthy


def test_compacting_a_format_1_index_upgrades_it_first(format1):
    from xsearch.api.index import open_index

    index = open_index(format1.name, root=format1.parent)
    generations = index.compact(full=True)
    store = Store.open(format1)
    assert generations == [4] and store.manifest.format == 2
    assert len(store.manifest.segments) == 1 and store.manifest.segments[0].deleted == 0
    assert store.count("audio") == 22 and verify_index(format1).healthy
