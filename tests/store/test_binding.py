"""What an index is bound to besides its model: vector widths per modality and the ingest
recipe, recorded by the first commit and enforced on every writer after it."""

from __future__ import annotations

import json

import pytest

from tests.helpers.store import MODEL, add_asset, check_invariants, commit_asset
from xsearch.errors import UsageError
from xsearch.store.binding import AUDIOCLIP_WIDTHS
from xsearch.store.manifest import MANIFEST
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Changes, Store, Writer
from xsearch.store.verify import verify_index

AUDIO_TEXT = {"text": 512, "audio": 512}  # given out of order on purpose
RECIPE = {"window_seconds": 10.0, "frames": "central"}


def audio_text_index(directory, recipe=RECIPE) -> Store:
    """A 512-d audio+text index: two assets, one of each modality."""
    with Writer(directory, MODEL, widths=AUDIO_TEXT, recipe=recipe) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.wav", 3, seed=1, dim=512)
        add_asset(writer, changes, "/m/a.txt", 2, seed=2, dim=512, modality="text")
        return writer.commit(changes)


def state(directory) -> tuple[bytes, list[str]]:
    return (directory / MANIFEST).read_bytes(), sorted(
        p.name for p in (directory / "data").iterdir()
    )


def test_a_512_d_audio_text_index_commits_reopens_rebuilds_and_verifies(tmp_path):
    directory = tmp_path / "idx"
    audio_text_index(directory)
    store = Store.open(directory)
    assert store.widths == {"audio": 512, "text": 512}
    assert store.modalities == ("audio", "text")
    assert store.recipe == RECIPE
    check_invariants(store)
    assert store.embeddings("audio")[1].shape == (3, 512)
    assert store.faiss_index("image") is None and store.embeddings("image")[1].shape[0] == 0

    rebuilt = rebuild_indexes(directory, "HNSW32")
    assert rebuilt.generation == 2 and rebuilt.widths == store.widths
    assert rebuilt.recipe == RECIPE
    check_invariants(rebuilt)
    assert rebuilt.faiss_index("text").d == 512
    verdict = verify_index(directory)
    assert verdict.healthy, [c for c in verdict.checks if not c.ok]
    assert verdict.generation == 2

    # a later writer that tells nothing commits with the recorded widths and recipe
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/b.txt", 1, seed=3, dim=512, modality="text")
        store = writer.commit(changes)
    assert store.widths == {"audio": 512, "text": 512} and store.recipe == RECIPE
    check_invariants(Store.open(directory))


def test_vectors_of_another_width_are_refused_and_nothing_is_written(tmp_path):
    directory = tmp_path / "idx"
    audio_text_index(directory)
    before = state(directory)
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/wide.wav", 2, dim=1024)
        with pytest.raises(UsageError, match="audio vectors of width 512; these have width 1024"):
            writer.commit(changes)
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/pic.png", 1, dim=512, modality="image")
        with pytest.raises(UsageError, match="has no image vectors") as refused:
            writer.commit(changes)
    assert "\n" not in str(refused.value)
    assert state(directory) == before
    store = Store.open(directory)
    assert store.generation == 1 and len(store.item_ids("audio")) == 3
    check_invariants(store)


def test_a_writer_asking_for_other_widths_is_refused_at_open(tmp_path):
    directory = tmp_path / "idx"
    audio_text_index(directory)
    with pytest.raises(UsageError, match="audio vectors of width 512; this run asks for width 768"):
        Writer(directory, MODEL, widths={"audio": 768, "text": 768})
    with pytest.raises(UsageError, match="built with audio, text vectors; this run asks for image"):
        Writer(directory, MODEL, widths=AUDIOCLIP_WIDTHS)
    Writer(directory, MODEL, widths={"audio": 512, "text": 512}).close()  # the lock was freed


def test_a_recipe_mismatch_is_refused(tmp_path):
    directory = tmp_path / "idx"
    audio_text_index(directory)
    other = {**RECIPE, "window_seconds": 5.0}
    with pytest.raises(UsageError) as refused:
        Writer(directory, MODEL, recipe=other)
    assert str(refused.value) == (
        "index idx was built with window_seconds 10.0; this run asks for 5.0 "
        "(use the same value, or another index)"
    )
    with pytest.raises(UsageError, match="built with frames central; this run asks for no frames"):
        Writer(directory, MODEL, recipe={"window_seconds": 10.0})
    Writer(directory, MODEL, recipe=dict(RECIPE)).close()


def test_the_first_writer_that_tells_a_recipe_records_it(tmp_path):
    directory = tmp_path / "idx"
    commit_asset(directory, "/m/a.wav", 1)  # no recipe told
    assert Store.open(directory).recipe is None
    with Writer(directory, MODEL, recipe=RECIPE) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/b.wav", 1)
        writer.commit(changes)
    assert Store.open(directory).recipe == RECIPE
    with pytest.raises(UsageError, match="window_seconds"):
        Writer(directory, MODEL, recipe={**RECIPE, "window_seconds": 2.5})


def test_widths_untold_are_those_of_the_first_vectors(tmp_path):
    """As before widths were recorded: one width, for every modality."""
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.wav", 2, dim=64)
        writer.commit(changes)
    store = Store.open(directory)
    assert store.widths == {"image": 64, "audio": 64, "text": 64}
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.txt", 1, dim=64, modality="text")
        check_invariants(writer.commit(changes))
        changes = Changes()
        add_asset(writer, changes, "/m/b.txt", 1, dim=32, modality="text")
        with pytest.raises(UsageError, match="width 64; these have width 32"):
            writer.commit(changes)


def _drop_recorded(directory) -> None:
    """Rewrite the manifest as one written before widths and recipes were recorded."""
    body = json.loads((directory / MANIFEST).read_bytes())
    for key in ("widths", "recipe", "sha256"):
        body.pop(key)
    (directory / MANIFEST).write_text(json.dumps(body))


def test_a_manifest_without_widths_is_read_from_its_stored_vectors(tmp_path):
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/a.wav", 2, dim=64)
        writer.commit(changes)
    _drop_recorded(directory)
    store = Store.open(directory)
    assert store.manifest.widths == {} and store.recipe is None
    assert store.widths == {"image": 64, "audio": 64, "text": 64}
    check_invariants(store)
    with pytest.raises(UsageError, match="image vectors of width 64; this run asks for width 1024"):
        Writer(directory, MODEL, widths=AUDIOCLIP_WIDTHS)
    with Writer(directory, MODEL, recipe=RECIPE) as writer:  # records both
        changes = Changes()
        add_asset(writer, changes, "/m/b.wav", 1, dim=64)
        writer.commit(changes)
    manifest = Store.open(directory).manifest
    assert manifest.widths == {"image": 64, "audio": 64, "text": 64}
    assert manifest.recipe == RECIPE
    assert verify_index(directory).healthy


def test_a_manifest_without_widths_or_vectors_is_audioclips(tmp_path):
    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        writer.commit(Changes(failures=[]))  # a generation with no vector
    _drop_recorded(directory)
    assert Store.open(directory).widths == AUDIOCLIP_WIDTHS
    Writer(directory, MODEL, widths=AUDIO_TEXT).close()  # nothing stored contradicts it


def test_verify_counts_an_index_with_no_generation_as_generation_0(tmp_path):
    directory = tmp_path / "idx"
    Writer(directory, MODEL).close()  # created, nothing committed
    verdict = verify_index(directory)
    assert verdict.generation == 0 == Store.open(directory).generation
    assert verdict.healthy


def test_verify_finds_vectors_of_another_width_than_recorded(tmp_path):
    directory = tmp_path / "idx"
    audio_text_index(directory)
    body = json.loads((directory / MANIFEST).read_bytes())
    body["widths"]["audio"] = 256
    body.pop("sha256")
    (directory / MANIFEST).write_text(json.dumps(body))
    problems = {c.role: c.problem for c in verify_index(directory).checks if not c.ok}
    assert problems == {
        "seg/1/embeddings/audio": "vectors of width 512; the index's audio width is 256"
    }
