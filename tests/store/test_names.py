"""Generation file names: written and parsed by one definition."""

from __future__ import annotations

from tests.helpers.store import commit_asset
from xsearch.store.manifest import manifest_copies
from xsearch.store.names import (
    generation_file,
    generation_of,
    manifest_copy,
    manifest_copy_generation,
)


def test_names_round_trip():
    assert generation_file("emb-audio", 12, "parquet") == "emb-audio-g12.parquet"
    assert generation_of("emb-audio-g12.parquet") == 12
    assert generation_of("faiss-audio-g3.ivfdata.grow") == 3  # a file still being written
    assert generation_of("notes.txt") is None
    assert manifest_copy(7) == "manifest-g7.json"
    assert manifest_copy_generation("manifest-g7.json") == 7
    assert manifest_copy_generation("items-g7.parquet") is None
    assert manifest_copy_generation("manifest-g7.json.tmp") is None


def test_every_file_a_commit_writes_names_its_generation(tmp_path):
    directory = commit_asset(tmp_path / "idx", "/m/a.wav", 2).dir
    store = commit_asset(directory, "/m/b.wav", 1)
    current = {e.path.removeprefix("data/") for e in store.manifest.files.values()}
    assert {generation_of(name) for name in current} == {1, 2}  # segments of both
    for role, entry in store.manifest.files.items():  # segment 1's files are generation 1's
        assert generation_of(entry.path) == (1 if role.startswith("seg/1/") else 2)
    assert sorted(manifest_copies(directory)) == [1, 2]
