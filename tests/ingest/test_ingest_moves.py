"""Regressions found by tests/reliability/test_state_machine.py: files moved over, swapped with or
rewritten with content that is indexed already, and changes after an HNSW rebuild.

Each index must stay true to the folder: one asset per path, holding that file's content hash,
every content of the folder indexed, and content that was indexed keeping its embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.store import check_invariants
from xsearch.ingest.identity import content_hash
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.samples import audio_samples, write_wav
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Store

WAVES = audio_samples(seconds=1.0)


@pytest.fixture(scope="module")
def encoder(tiny_audioclip):
    return tiny_audioclip


def write(path: Path, name: str, mtime: int) -> None:
    """A 1 s sample; every write gets its own mtime, as it would a second apart."""
    write_wav(path, WAVES[name])
    os.utime(path, (mtime, mtime))


def run(root: Path, index: Path, encoder, **options):
    report = ingest(find_files([root]), index, encoder, IngestOptions(workers=0, **options))
    store = Store.open(index)
    check_invariants(store)
    return report, store


def by_name(store: Store) -> dict[str, dict]:
    assets = store.assets.to_pylist()
    names = [Path(a["path"]).name for a in assets]
    assert len(set(names)) == len(names), f"duplicate paths: {sorted(names)}"
    return dict(zip(names, assets))


def vectors_of(store: Store, asset_id: int) -> dict[int, bytes]:
    ids, vectors = store.embeddings("audio")
    items = store.items.to_pylist()
    mine = {i["item_id"] for i in items if i["asset_id"] == asset_id}
    return {int(i): v.tobytes() for i, v in zip(ids, vectors) if i in mine}


def assert_true_to_folder(store: Store, root: Path) -> None:
    """Every asset holds its file's content, and every file's content is indexed."""
    assets = by_name(store)
    for asset in assets.values():
        assert asset["content_hash"] == content_hash(Path(asset["path"])), asset
    indexed = {a["content_hash"] for a in assets.values()}
    assert {content_hash(p) for p in root.glob("*.wav")} <= indexed


@pytest.fixture
def two_files(tmp_path, encoder):
    """a.wav and b.wav, indexed: (root, index, the store)."""
    root = tmp_path / "media"
    root.mkdir()
    write(root / "a.wav", "tone_440hz.wav", 1_000)
    write(root / "b.wav", "siren.wav", 2_000)
    _, store = run(root, tmp_path / "idx", encoder)
    return root, tmp_path / "idx", store


def test_move_over_an_indexed_file_keeps_one_asset(two_files, encoder):
    root, index, before = two_files
    a = by_name(before)["a.wav"]
    os.replace(root / "a.wav", root / "b.wav")  # mv a.wav b.wav
    report, store = run(root, index, encoder)
    assert (report.renamed, report.removed, report.items) == (1, 1, {})
    assets = by_name(store)
    assert list(assets) == ["b.wav"] and assets["b.wav"]["asset_id"] == a["asset_id"]
    assert vectors_of(store, a["asset_id"]) == vectors_of(before, a["asset_id"])
    assert_true_to_folder(store, root)


def test_swapped_names_keep_both_embeddings(two_files, encoder):
    root, index, before = two_files
    old = by_name(before)
    os.replace(root / "a.wav", root / "t.wav")
    os.replace(root / "b.wav", root / "a.wav")
    os.replace(root / "t.wav", root / "b.wav")
    report, store = run(root, index, encoder, prune=True)
    assert (report.renamed, report.removed, report.items) == (2, 0, {})
    assets = by_name(store)
    assert assets["a.wav"]["asset_id"] == old["b.wav"]["asset_id"]
    assert assets["b.wav"]["asset_id"] == old["a.wav"]["asset_id"]
    assert_true_to_folder(store, root)


def test_rewritten_with_the_content_of_a_deleted_file(two_files, encoder):
    root, index, before = two_files
    (root / "b.wav").unlink()
    run(root, index, encoder)  # no prune: b.wav's asset stays
    write(root / "a.wav", "siren.wav", 3_000)  # a.wav now holds what b.wav held
    report, store = run(root, index, encoder)
    assert (report.renamed, report.items) == (1, {})
    assets = by_name(store)
    assert assets["a.wav"]["asset_id"] == by_name(before)["b.wav"]["asset_id"]
    assert_true_to_folder(store, root)


def test_rewritten_with_the_content_of_another_file(two_files, encoder):
    """a.wav becomes a copy of b.wav: it keeps an asset of its own, holding b.wav's content
    and vectors under new item ids; its old sound is gone."""
    root, index, before = two_files
    old = by_name(before)
    write(root / "a.wav", "siren.wav", 3_000)  # a copy of b.wav: indexed there already
    report, store = run(root, index, encoder, prune=True)
    assert (report.changed, report.copied, report.removed, report.items) == (1, 1, 0, {})
    assets = by_name(store)
    assert sorted(assets) == ["a.wav", "b.wav"]
    assert assets["a.wav"]["asset_id"] not in (old["a.wav"]["asset_id"], old["b.wav"]["asset_id"])
    assert assets["a.wav"]["content_hash"] == assets["b.wav"]["content_hash"]
    mine = vectors_of(store, assets["a.wav"]["asset_id"])
    theirs = vectors_of(store, assets["b.wav"]["asset_id"])
    assert sorted(mine.values()) == sorted(theirs.values()) and not set(mine) & set(theirs)
    assert vectors_of(store, old["a.wav"]["asset_id"]) == {}
    assert_true_to_folder(store, root)


def test_moved_away_and_replaced_by_a_new_file(two_files, encoder):
    """Log rotation: `mv a.wav a.1.wav` and a new a.wav. The moved file keeps its asset."""
    root, index, before = two_files
    a = by_name(before)["a.wav"]
    os.replace(root / "a.wav", root / "a.1.wav")
    write(root / "a.wav", "white_noise.wav", 3_000)
    report, store = run(root, index, encoder, prune=True)
    assert (report.renamed, report.added, report.changed, report.removed) == (1, 1, 0, 0)
    assert report.items == {"audio": 1}
    assets = by_name(store)
    assert assets["a.1.wav"]["asset_id"] == a["asset_id"]
    assert vectors_of(store, a["asset_id"]) == vectors_of(before, a["asset_id"])
    assert_true_to_folder(store, root)


def test_changes_after_an_hnsw_rebuild(two_files, encoder):
    """HNSW cannot remove ids: a changed or pruned file used to fail every later ingest."""
    root, index, _ = two_files
    rebuild_indexes(index, "HNSW8")
    write(root / "a.wav", "white_noise.wav", 3_000)
    (root / "b.wav").unlink()
    report, store = run(root, index, encoder, prune=True)
    assert (report.changed, report.removed) == (1, 1)
    assert store.faiss_index("audio").ntotal == 1
    ids, vectors = store.embeddings("audio")
    _, found = store.faiss_index("audio").search(np.ascontiguousarray(vectors), 1)
    assert found[:, 0].tolist() == ids.tolist()
    assert_true_to_folder(store, root)
