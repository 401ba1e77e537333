"""What a new user hit: files of unlisted or unsupported types, an empty folder, files gone from
a folder, and copies of indexed files added later. Each is ingested or reported, never dropped
without a word."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers.media_factory import sine, write_wav
from tests.helpers.store import check_invariants
from xsearch.errors import UsageError
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files, summarize_unsupported
from xsearch.models.fake import FakeEncoder, fake_spec
from xsearch.store.store import Store

RATE = 16_000


@pytest.fixture
def encoder():
    return FakeEncoder(fake_spec(64, ("image", "audio", "text")))


def tone(path: Path, freq: float, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, sine(freq, seconds, RATE) * 32767, RATE)
    return path


def aiff(path: Path, freq: float, format: str = "aiff", codec: str = "pcm_s16be") -> Path:
    """One second of a tone in an AIFF-family or Sun (`au`) container."""
    wave = (sine(freq, 1.0, RATE) * 32767).astype(np.int16)[None, :]
    with av.open(os.fspath(path), "w", format=format) as container:
        stream = container.add_stream(codec, rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave, format="s16", layout="mono")
        frame.sample_rate = RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def run(paths, index: Path, encoder, **options):
    return ingest(find_files(paths), index, encoder, IngestOptions(workers=0, **options))


def by_name(store: Store) -> dict[str, dict]:
    return {Path(a["path"]).name: a for a in store.assets.to_pylist()}


# --- types -----------------------------------------------------------------------------------


def test_more_sound_and_video_types_are_ingested(tmp_path, encoder):
    root = tmp_path / "media"
    root.mkdir()
    aiff(root / "a.aifc", 300)
    aiff(root / "b.aif", 400)
    aiff(root / "c.au", 500, format="au")
    report = run([root], tmp_path / "idx", encoder)
    assert report.failed == [] and report.added == 3
    kinds = {name: a["kind"] for name, a in by_name(Store.open(tmp_path / "idx")).items()}
    assert kinds == {"a.aifc": "audio", "b.aif": "audio", "c.au": "audio"}


def test_a_file_named_explicitly_is_tried_by_its_content(tmp_path, encoder):
    tone(tmp_path / "x.wav", 440).rename(tmp_path / "recording.take1")
    (tmp_path / "noise.xyz").write_bytes(bytes(range(256)) * 16)
    (tmp_path / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    named = [tmp_path / "recording.take1", tmp_path / "noise.xyz", tmp_path / "logo.svg"]
    unsupported: list[Path] = []
    found = list(find_files(named, on_unsupported=unsupported.append))
    assert [p.name for p in found] == ["recording.take1", "noise.xyz", "logo.svg"]
    assert unsupported == []

    report = ingest(found, tmp_path / "idx", encoder, IngestOptions(workers=0))
    assert report.added == 1
    assert by_name(Store.open(tmp_path / "idx"))["recording.take1"]["kind"] == "audio"
    reasons = {Path(p).name: r for p, r in report.failed}
    assert set(reasons) == {"noise.xyz", "logo.svg"}
    assert "not an audio, image or video file" in reasons["noise.xyz"]
    assert "SVG" in reasons["logo.svg"] and "\n" not in reasons["logo.svg"]


def test_the_walk_reports_files_of_unsupported_types(tmp_path):
    root = tmp_path / "stamps"
    for name in ["a.svg", "sub/b.svg", "c.xyz", "d.png", "d.txt", "e.json", "README", ".f.svg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    unsupported: list[Path] = []
    found = list(find_files([root], on_unsupported=unsupported.append))
    assert [p.name for p in found] == ["d.png"]
    assert sorted(p.name for p in unsupported) == ["README", "a.svg", "b.svg", "c.xyz"]
    assert summarize_unsupported(unsupported) == (
        "4 files of unsupported types (.svg: 2, .xyz: 1, no extension: 1)"
    )


def test_summarize_unsupported():
    assert summarize_unsupported([]) == ""
    assert summarize_unsupported(["x/a.SVG"]) == "1 file of an unsupported type (.svg: 1)"
    assert summarize_unsupported(["a.xyz", "b.svg", "c.svg"]) == (
        "3 files of unsupported types (.svg: 2, .xyz: 1)"
    )


# --- an empty folder, files gone -----------------------------------------------------------


def test_an_empty_folder_creates_no_index(tmp_path, encoder):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not media")
    with pytest.raises(UsageError, match="no media files"):
        run([tmp_path / "empty"], tmp_path / "idx", encoder)
    assert not (tmp_path / "idx").exists()


def test_an_empty_folder_prunes_an_existing_index(tmp_path, encoder):
    root = tmp_path / "media"
    tone(root / "a.wav", 440)
    run([root], tmp_path / "idx", encoder)
    (root / "a.wav").unlink()
    report = run([root], tmp_path / "idx", encoder, prune=True)
    assert report.removed == 1 and Store.open(tmp_path / "idx").assets.num_rows == 0


def test_files_gone_are_counted_until_pruned(tmp_path, encoder):
    root = tmp_path / "media"
    for k, name in enumerate(["a.wav", "b.wav", "c.wav"]):
        tone(root / name, 300 + 100 * k)
    first = run([root], tmp_path / "idx", encoder)
    assert first.missing == 0
    (root / "a.wav").unlink()
    (root / "b.wav").unlink()
    kept = run([root], tmp_path / "idx", encoder)
    assert (kept.missing, kept.removed) == (2, 0)
    assert Store.open(tmp_path / "idx").assets.num_rows == 3
    pruned = run([root], tmp_path / "idx", encoder, prune=True)
    assert (pruned.missing, pruned.removed) == (0, 2)
    assert "missing" in pruned.as_dict()


# --- copies ----------------------------------------------------------------------------------


def test_a_copy_added_later_gets_its_own_asset_without_embedding(tmp_path, encoder):
    root = tmp_path / "media"
    tone(root / "dogs" / "a.wav", 440, seconds=25.0)  # three windows
    (root / "dogs" / "a.json").write_text(json.dumps({"text": "a dog", "labels": ["bark"]}))
    index = tmp_path / "idx"
    run([root], index, encoder, labels_from_folder=True)
    before = Store.open(index)
    calls = dict(encoder.calls)

    (root / "cats").mkdir()
    shutil.copy(root / "dogs" / "a.wav", root / "cats" / "b.wav")  # cp: a new mtime
    (root / "cats" / "b.json").write_text(json.dumps({"text": ["a dog", "a cat"]}))
    report = run([root], index, encoder, labels_from_folder=True)

    assert (report.added, report.copied, report.unchanged) == (1, 1, 1)
    assert report.items == {"text": 1}  # only the new text "a cat" is embedded
    assert encoder.calls == calls | {"text": calls["text"] + 1}
    store = Store.open(index)
    check_invariants(store)
    assets = by_name(store)
    a, b = assets["a.wav"], assets["b.wav"]
    assert b["asset_id"] != a["asset_id"] and b["content_hash"] == a["content_hash"]
    assert b["path"] == str((root / "cats" / "b.wav").resolve())
    assert b["labels"] == ["cats"] and a["labels"] == ["bark", "dogs"]  # their own labels
    assert (b["kind"], b["duration"]) == (a["kind"], a["duration"])
    with store.lock:
        found = store.sql.execute("SELECT count(*) FROM assets WHERE path LIKE '%b.wav'")
        assert found.fetchone()[0] == 1

    items = store.items.to_pylist()
    mine = sorted((i for i in items if i["asset_id"] == b["asset_id"]), key=_order)
    theirs = sorted((i for i in items if i["asset_id"] == a["asset_id"]), key=_order)
    assert [(i["modality"], i["start"], i["end"]) for i in mine if i["modality"] == "audio"] == [
        (i["modality"], i["start"], i["end"]) for i in theirs if i["modality"] == "audio"
    ]
    assert sorted(i["text"] for i in mine if i["modality"] == "text") == ["a cat", "a dog"]
    assert not {i["item_id"] for i in mine} & {i["item_id"] for i in before.items.to_pylist()}
    shared = [i for i in mine if i["modality"] == "audio" or i["text"] == "a dog"]
    originals = [
        next(t for t in theirs if (t["modality"], t["start"], t["text"]) == key)
        for key in [(i["modality"], i["start"], i["text"]) for i in shared]
    ]
    assert np.array_equal(
        store.vectors([i["item_id"] for i in shared]),
        before.vectors([i["item_id"] for i in originals]),
    )


def test_a_copy_and_a_rename_in_one_run(tmp_path, encoder):
    """a.wav moved to c.wav and copied to d.wav: c.wav takes a.wav's asset (a rename), d.wav
    gets a copy of it."""
    root = tmp_path / "media"
    tone(root / "a.wav", 440)
    index = tmp_path / "idx"
    run([root], index, encoder)
    a = by_name(Store.open(index))["a.wav"]
    shutil.copy(root / "a.wav", root / "d.wav")
    os.replace(root / "a.wav", root / "c.wav")
    report = run([root], index, encoder)
    assert (report.renamed, report.added, report.copied, report.items) == (1, 1, 1, {})
    assets = by_name(Store.open(index))
    assert sorted(assets) == ["c.wav", "d.wav"] and assets["c.wav"]["asset_id"] == a["asset_id"]


def test_copies_in_the_first_ingest_each_get_an_asset(tmp_path, encoder):
    root = tmp_path / "media"
    tone(root / "a.wav", 440)
    shutil.copy(root / "a.wav", root / "b.wav")
    report = run([root], tmp_path / "idx", encoder)
    assert report.added == 2
    assert sorted(by_name(Store.open(tmp_path / "idx"))) == ["a.wav", "b.wav"]


def _order(item: dict) -> tuple:
    return item["modality"], item["start"] or 0.0, item["text"] or ""
