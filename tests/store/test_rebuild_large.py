"""Streamed rebuilds for large collections: a sampled training set read batch by batch, dead
items left out, IVF lists kept on disk, and atomic publication."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from tests.helpers.cli import run_cli
from xsearch.errors import UsageError
from xsearch.indexes import faiss_index
from xsearch.search.engine import SearchOptions, search
from xsearch.store.rebuild import RebuildOptions, rebuild, rebuild_indexes
from xsearch.store.reference import bottom_k
from xsearch.store.store import Changes, Store, Writer

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}
DIM = 64
FACTORY = "IVF32,SQ8"


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 30 centres (uniform random vectors have no near neighbours)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((30, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 30, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def commit_assets(writer: Writer, n_assets: int, per_asset: int, seed: int) -> Store:
    changes = Changes()
    ids = writer.allocate_items(n_assets * per_asset)
    for a in range(n_assets):
        asset = writer.allocate_asset()
        changes.new_assets.append(
            {"asset_id": asset, "path": f"/m/{asset}.wav", "content_hash": str(asset),
             "kind": "audio", "bytes": 1, "mtime": 0.0, "duration": 10.0, "labels": []}
        )  # fmt: skip
        for k, item in enumerate(ids[a * per_asset : (a + 1) * per_asset]):
            changes.new_items.append(
                {"item_id": int(item), "asset_id": asset, "modality": "audio",
                 "start": float(k), "end": k + 1.0, "text": None}
            )  # fmt: skip
    changes.add_vectors("audio", ids, clustered(len(ids), seed))
    return writer.commit(changes)


@pytest.fixture(autouse=True)
def _one_thread():
    """FAISS's OpenMP pool spins while it waits: on a shared 2-core machine, training small
    indexes on two threads takes 5x longer than on one."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """3,000 audio items in three commits (three Parquet parts), then 40 assets (400 items)
    removed: their vectors stay in the parts, dead."""
    directory = tmp_path_factory.mktemp("large") / "idx"
    with Writer(directory, MODEL) as writer:
        for seed in range(3):
            commit_assets(writer, 100, 10, seed)
        writer.commit(Changes(removed_assets=set(range(10, 50))))
    return directory


@pytest.fixture
def copy(base, tmp_path):
    def make(name: str) -> Path:
        shutil.copytree(base, tmp_path / name)
        return tmp_path / name

    return make


def queries(n: int = 40) -> np.ndarray:
    return clustered(n, seed=7)


def exact_top(store: Store, query: np.ndarray, k: int = 10) -> set[int]:
    ids, vectors = store.embeddings("audio")
    return set(ids[np.argsort(-(vectors @ query), kind="stable")[:k]].tolist())


def recall(store: Store, truth_store: Store, nprobe: int) -> float:
    options = SearchOptions(nprobe=nprobe)
    return float(
        np.mean(
            [
                len({h.item_id for h in search(store, q, "audio", 10, options)}
                    & exact_top(truth_store, q)) / 10
                for q in queries()
            ]
        )
    )  # fmt: skip


def dead_ids(store: Store) -> set[int]:
    """Ids whose vectors are stored in a part but whose items were removed."""
    import pyarrow.parquet as pq

    stored = set()
    for role in store.embedding_roles("audio"):
        stored |= set(pq.read_table(store.path(role), columns=["item_id"])["item_id"].to_pylist())
    return stored - set(store.item_ids("audio").tolist())


def index_ids(index) -> np.ndarray:
    return faiss.vector_to_array(faiss.downcast_index(index).id_map)


def segment_indexes(store: Store) -> list:
    """The audio index of each segment (a rebuild keeps the segments, re-typing each)."""
    return [index for _, index in store.indexes("audio")]


def all_index_ids(store: Store) -> np.ndarray:
    return np.concatenate([index_ids(index) for index in segment_indexes(store)])


def ivfdata_entries(store: Store) -> list:
    return [e for r, e in store.manifest.files.items() if r.endswith("/ivfdata/audio")]


@pytest.mark.slow  # trains two IVF indexes
def test_streamed_training_matches_an_in_memory_build(copy):
    """Trained on a streamed sample of half the items, the index finds what one trained on
    all of them in memory finds, at every breadth."""
    streamed_dir, memory_dir = copy("streamed"), copy("memory")
    streamed = rebuild_indexes(streamed_dir, FACTORY, train_sample=1300, batch_size=128)
    with Writer(memory_dir, MODEL) as writer:  # trained on every vector, all in memory
        in_memory = writer.rebuild({"audio": writer.store.embeddings("audio")}, FACTORY)
    for nprobe in (1, 2, 4, 32):
        r_streamed, r_memory = (
            recall(streamed, streamed, nprobe),
            recall(in_memory, in_memory, nprobe),
        )
        assert abs(r_streamed - r_memory) <= 0.05, (nprobe, r_streamed, r_memory)
    assert recall(streamed, streamed, 32) >= 0.95  # every list: the codes' own precision


def test_memory_is_bounded_by_the_batch_and_the_sample(copy, monkeypatch):
    """With batches of 100 and a sample of 500, no step holds more vectors than that."""
    from xsearch.store import rebuild as module

    directory = copy("bounded")

    def no_whole_reads(*args, **kwargs):
        raise AssertionError("the rebuild read all embeddings at once")

    monkeypatch.setattr(Store, "embeddings", no_whole_reads)
    added, samples, rows = [], [], []
    real_add, real_sample = faiss_index.add, module._training_sample

    def counting_add(index, ids, vectors):
        added.append(len(vectors))
        real_add(index, ids, vectors)

    def counting_sample(*args):
        samples.append(len(sample := real_sample(*args)))
        return sample

    monkeypatch.setattr(faiss_index, "add", counting_add)
    monkeypatch.setattr(module, "_training_sample", counting_sample)
    options = RebuildOptions(FACTORY, train_sample=500, batch_size=100, on_batch=rows.append)
    store, (report,) = rebuild(directory, options)
    assert max(rows) <= 100 and max(added) <= 100 and samples == [500]
    assert report.max_batch_rows == 100 and report.batches == len(rows) > 30
    assert sum(added) == report.items == 2600 and report.train_sample == 500
    assert store.faiss_index("audio").ntotal == 2600


def test_dead_items_are_not_added_and_the_reference_sample_is_kept(copy):
    directory = copy("dead")
    before = Store.open(directory)
    dead = dead_ids(before)
    assert len(dead) == 400
    store = rebuild_indexes(directory, FACTORY, batch_size=64)
    live = store.item_ids("audio")
    ids = all_index_ids(store)
    assert sorted(ids.tolist()) == sorted(live.tolist()) and not dead & set(ids.tolist())
    emb_ids, vectors = before.embeddings("audio")  # the in-memory sketch, for comparison
    want_ids, want_vectors = bottom_k(emb_ids, vectors)
    ref_ids, ref_vectors = store.reference("audio")
    assert ref_ids.tolist() == want_ids.tolist()
    assert np.array_equal(ref_vectors, want_vectors)


def test_on_disk_lists_answer_like_in_memory_lists(copy):
    memory = rebuild_indexes(copy("mem"), "IVF32,PQ16", train_sample=2000, batch_size=256)
    disk = rebuild_indexes(
        copy("disk"), "IVF32,PQ16", train_sample=2000, batch_size=256, on_disk=True
    )
    for index in segment_indexes(disk):
        lists = faiss_index.on_disk_lists(index)
        assert lists is not None and lists.read_only  # mapped, read-only
    entries = ivfdata_entries(disk)
    assert len(entries) == len(disk.manifest.segments) > 1
    assert all(e.path.endswith(f"-g{disk.generation}.ivfdata") for e in entries)
    ivf = faiss_index.ivf_of(segment_indexes(disk)[0])
    assert sum(e.bytes for e in entries) == 2600 * (ivf.code_size + 8)  # packed: no free space
    assert all(faiss_index.on_disk_lists(i) is None for i in segment_indexes(memory))
    for q in queries(20):
        for nprobe in (1, 4):
            a = search(memory, q, "audio", 10, SearchOptions(nprobe=nprobe))
            b = search(disk, q, "audio", 10, SearchOptions(nprobe=nprobe))
            assert [h.item_id for h in a] == [h.item_id for h in b]
            assert np.allclose([h.cosine for h in a], [h.cosine for h in b], atol=1e-6)
    assert not list(disk.dir.glob("data/*.grow"))


def test_an_on_disk_index_with_more_vectors_than_its_file_has_bytes_loads(copy):
    """The lists live in the .ivfdata file: the index file itself (IVF1,SQ4 at d=64: under
    1 kB before its id map) holds fewer bytes than the 2,600 vectors it counts. 10M vectors in
    IVF2048,SQ8 at d=1024 (8.4 MB) were refused as a corrupt file before."""
    store = rebuild_indexes(copy("tiny-lists"), "IVF1,SQ4", on_disk=True)
    reopened = Store.open(store.dir)
    assert reopened.faiss_index("audio").ntotal == 2600
    assert all(faiss_index.on_disk_lists(i) is not None for i in segment_indexes(reopened))
    q = queries(1)[0]
    assert len({h.item_id for h in search(store, q, "audio", 10)} & exact_top(store, q)) >= 8


def test_commits_to_an_on_disk_index_write_new_lists(copy):
    directory = copy("commit")
    old = rebuild_indexes(directory, "IVF32,SQ8", on_disk=True)
    old_lists = [old.dir / e.path for e in ivfdata_entries(old)]
    old_bytes = [path.read_bytes() for path in old_lists]
    with Writer(directory, MODEL) as writer:
        commit_assets(writer, 20, 10, seed=11)
        new = writer.commit(Changes(removed_assets={60, 61}))
    assert [path.read_bytes() for path in old_lists] == old_bytes  # published: never changed
    assert all(faiss_index.on_disk_lists(i) is not None for i in segment_indexes(new))
    live = set(new.item_ids("audio").tolist())
    assert live <= set(all_index_ids(new).tolist())  # deleted ones stay, marked
    assert new.faiss_index("audio").ntotal == len(live) == 2600 + 200 - 20
    new_item = int(new.item_ids("audio").max())
    hit = search(new, new.vectors([new_item])[0], "audio", 1, SearchOptions(nprobe=32))[0]
    assert hit.item_id == new_item
    assert not list(directory.glob("data/*.grow"))


def test_factories_the_lists_cannot_live_on_disk_with(copy):
    directory = copy("refused")
    for factory in ("Flat", "HNSW16", "IVF16,PQ16x4fs", "IVF16,PQ16,RFlat"):
        with pytest.raises(UsageError, match="on_disk: needs an IVF index"):
            rebuild_indexes(directory, factory, on_disk=True)
    assert Store.open(directory).generation == 4  # nothing was published


def test_a_factory_is_checked_at_the_stored_dimension(copy):
    store = rebuild_indexes(copy("pq"), "IVF16,PQ16")  # 16 sub-quantizers need d >= 16
    assert store.faiss_index("audio").ntotal == 2600
    with pytest.raises(UsageError, match="bad index factory"):
        rebuild_indexes(copy("pq2"), "IVF16,PQ48")  # 64 is not a multiple of 48


def test_too_few_items_to_train_is_a_one_line_error(copy, tmp_path):
    directory = copy("few")
    with pytest.raises(UsageError, match=r"2,600 vectors are too few .* 4096 clusters"):
        rebuild_indexes(directory, "IVF4096,Flat")
    assert Store.open(directory).generation == 4  # nothing was published
    root = tmp_path / "home"
    shutil.copytree(directory, root / "idx")
    done = run_cli("index", "rebuild", "--index", "idx", "--factory", "IVF4096,Flat",
                   env={"XSEARCH_HOME": str(root)})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "too few to train" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # real processes
def test_cli_rebuild_on_disk_and_a_crash_before_the_publish(base, tmp_path):
    root = tmp_path / "home"
    shutil.copytree(base, root / "idx")
    env = {"XSEARCH_HOME": str(root)}
    args = ["index", "rebuild", "--index", "idx", "--factory", "IVF16,SQ8", "--on-disk"]
    crashed = run_cli(*args, env={**env, "XSEARCH_CRASH_AT": "write-faiss-audio"})
    assert crashed.returncode == -9, crashed.stderr
    store = Store.open(root / "idx")
    assert store.generation == 4 and not ivfdata_entries(store)
    assert all(faiss_index.ivf_of(i) is None for i in segment_indexes(store))  # still exact
    assert list((root / "idx" / "data").glob("*-g5.ivfdata"))  # the crashed run's leftovers

    done = run_cli(*args, "--batch-size", "500", "--json", env=env)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert facts["generation"] == 5 and facts["modalities"][0]["items"] == 2600
    assert facts["modalities"][0]["max_batch_rows"] == 500
    store = Store.open(root / "idx")
    assert all(faiss_index.on_disk_lists(i) is not None for i in segment_indexes(store))
    assert not list((root / "idx" / "data").glob("*.grow"))
    q = queries(1)[0]
    hits = search(store, q, "audio", 10, SearchOptions(nprobe=16))
    assert len({h.item_id for h in hits} & exact_top(store, q)) >= 9  # SQ8: near-exact


@pytest.mark.parametrize("on_disk", [False, True])
def test_removals_keep_an_ivf_index_consistent(copy, on_disk):
    """Removing items from an IVF index renumbers the positions its lists hold, so that the
    id map, the lists and later additions agree (FAISS's id map alone would not)."""
    from tests.helpers.store import check_invariants

    directory = copy(f"removals-{on_disk}")
    rebuild_indexes(directory, "IVF32,Flat", on_disk=on_disk)
    with Writer(directory, MODEL) as writer:
        writer.commit(Changes(removed_assets={55, 56, 57, 120}))
        commit_assets(writer, 5, 10, seed=21)
        writer.commit(Changes(removed_assets={58, 301}))
        store = commit_assets(writer, 5, 10, seed=22)
    check_invariants(Store.open(directory))  # every live item finds itself, no dead one
    assert store.faiss_index("audio").ntotal == 2600 - 50 + 100 - 10
