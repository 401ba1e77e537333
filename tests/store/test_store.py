"""The store: generations, lock, leftovers, model identity, rebuild."""

from __future__ import annotations

import pytest

from tests.helpers.store import MODEL, add_asset, check_invariants, commit_asset
from xsearch.errors import UsageError
from xsearch.store.lock import IndexLocked, WriterLock
from xsearch.store.manifest import StoreCorrupt
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Changes, Store, Writer, index_dir
from xsearch.store.verify import verify_index


def test_commit_reopen_and_remove(tmp_path):
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        a = add_asset(writer, changes, "/m/a.wav", 3, seed=1)
        add_asset(writer, changes, "/m/b.wav", 2, seed=2)
        assert writer.commit(changes).generation == 1
    store = Store.open(directory)
    assert store.assets.num_rows == 2 and store.items.num_rows == 5
    check_invariants(store)

    with Writer(directory, MODEL) as writer:
        changes = Changes(removed_assets={a})
        changes.renamed[1] = "/m/b-renamed.wav"
        writer.commit(changes)
    store = Store.open(directory)
    assert store.generation == 2
    assert store.assets.column("path").to_pylist() == ["/m/b-renamed.wav"]
    assert len(store.item_ids("audio")) == 2
    check_invariants(store)


def test_second_writer_gets_a_clear_error(tmp_path):
    with Writer(tmp_path / "idx", MODEL), pytest.raises(IndexLocked, match="another process"):
        Writer(tmp_path / "idx", MODEL)


def test_the_lock_can_be_checked_without_taking_it(tmp_path):
    lock = WriterLock(tmp_path / "idx" / "writer.lock")
    lock.check()  # no index yet: free, and nothing is created
    assert not (tmp_path / "idx").exists()
    with Writer(tmp_path / "idx", MODEL), pytest.raises(IndexLocked, match="another process"):
        lock.check()
    lock.check()  # free again
    with Writer(tmp_path / "idx", MODEL):  # and check() left it free for the next writer
        pass


def test_a_file_deleted_after_its_check_is_store_corrupt_not_a_crash(tmp_path):
    """A later commit deletes the files of generations two behind, between a reader's check of
    a file and its read: that is StoreCorrupt, which readers answer by reopening."""
    store = Store.open(commit_asset(tmp_path / "idx", "/m/a.wav", 3).dir)
    for role in ("reference/audio", "seg/1/items", "seg/1/embeddings/audio"):
        store.path(role).unlink()  # checked (and remembered as checked), then deleted
    with pytest.raises(StoreCorrupt, match="deleted by a newer generation"):
        store.reference("audio")
    with pytest.raises(StoreCorrupt, match="deleted by a newer generation"):
        store.items  # noqa: B018
    with pytest.raises(StoreCorrupt, match="deleted by a newer generation"):
        store.embeddings("audio")


def test_another_model_is_refused(tmp_path):
    commit_asset(tmp_path / "idx", "/m/a.wav", 1)
    other = {**MODEL, "weights": "abc123"}
    with pytest.raises(UsageError, match="was built with"):
        Writer(tmp_path / "idx", other)


def test_leftovers_of_a_crashed_commit_are_removed(tmp_path):
    directory = tmp_path / "idx"
    commit_asset(directory, "/m/a.wav", 1)
    stray = directory / "data" / "items-g2.parquet"
    stray.write_bytes(b"half-written")
    tmp_manifest = directory / ".manifest.json.tmp-123"
    tmp_manifest.write_bytes(b"{")
    Writer(directory, MODEL).close()
    assert not stray.exists() and not tmp_manifest.exists()
    check_invariants(Store.open(directory))


def test_corrupt_file_is_detected_by_checksum(tmp_path):
    directory = tmp_path / "idx"
    commit_asset(directory, "/m/a.wav", 2)
    faiss_file = next((directory / "data").glob("faiss-audio-*"))
    data = bytearray(faiss_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt, match="checksum mismatch"):
        Store.open(directory).faiss_index("audio")


def test_unreadable_manifest_is_one_clear_error(tmp_path):
    directory = tmp_path / "idx"
    (directory / "data").mkdir(parents=True)
    (directory / "manifest.json").write_bytes(b"")
    with pytest.raises(StoreCorrupt, match="manifest is unreadable"):
        Store.open(directory)


def test_rebuild_with_another_factory_keeps_results(tmp_path):
    directory = tmp_path / "idx"
    commit_asset(directory, "/m/a.wav", 50, seed=3)
    before = Store.open(directory)
    store = rebuild_indexes(directory, "HNSW32")
    assert store.generation == before.generation + 1
    import faiss

    index = store.faiss_index("audio")  # owns what the downcast proxies below point at
    outer = faiss.downcast_index(index)
    assert isinstance(faiss.downcast_index(outer.index), faiss.IndexHNSW)
    check_invariants(store)
    with pytest.raises(UsageError, match="bad index factory"):
        rebuild_indexes(directory, "NoSuchIndex")


def test_index_names_are_checked():
    with pytest.raises(UsageError):
        index_dir("../escape")
    assert index_dir("music").name == "music"


def test_unknown_index_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no index"):
        Store.open(tmp_path / "nothing")


def test_a_reader_one_generation_behind_keeps_files_that_generation_carried_over(tmp_path):
    """Generation 2 adds only text, so it reads generation 1's audio index; publishing
    generation 3 (new audio) must not delete that file while readers of 2 may open it."""
    directory = tmp_path / "idx"
    commit_asset(directory, "/m/a.wav", 2, seed=1)
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.txt", 1, seed=2, modality="text")
        writer.commit(changes)
    reader = Store.open(directory)
    assert reader.manifest.files["seg/1/faiss/audio"].path.endswith("-g1.index")  # segment 1
    commit_asset(directory, "/m/b.wav", 1, seed=3)
    assert reader.faiss_index("audio").ntotal == 2
    check_invariants(reader)
    Writer(directory, MODEL).close()  # a writer opening on generation 3 keeps them too
    assert Store.open(directory).generation == 3
    assert (directory / reader.manifest.files["seg/1/faiss/audio"].path).exists()
    assert verify_index(directory).checks[0].note is None  # not taken for a leftover
