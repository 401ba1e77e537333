"""Dataset adapters (xsearch.eval.datasets) on generated collections in each layout, their
errors on malformed metadata, the ingest annotations hook, and the evaluation index
(xsearch.eval.build)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.helpers.eval_layouts import write_clip, write_layout, write_manifest, write_movie
from xsearch.errors import UsageError
from xsearch.eval.build import EVAL_MARKER, build_index, eval_index_name
from xsearch.eval.datasets import ADAPTERS, Record, load_dataset
from xsearch.ingest.pipeline import Annotation, IngestOptions, ingest
from xsearch.store.store import Store


@pytest.fixture(scope="module")
def encoder(tiny_audioclip):
    return tiny_audioclip


def options() -> IngestOptions:
    return IngestOptions(workers=0)


# ------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_each_adapter_reads_its_layout(tmp_path, kind):
    layout = write_layout(kind, tmp_path / kind)
    dataset = load_dataset(kind, layout.root, **layout.options)
    assert dataset.kind == kind
    assert dataset.records == layout.records
    assert dataset.skipped == layout.skipped
    assert dataset.classes == layout.classes
    assert all(r.path.is_absolute() and r.path.is_file() for r in dataset)


def test_esc50_labels_folds_and_subsets(tmp_path):
    layout = write_layout("esc50", tmp_path, classes=3, per_class=2, folds=2)
    dataset = load_dataset("esc50", tmp_path)
    assert dataset.classes == ["chirping birds", "dog", "vacuum cleaner"]
    assert dataset.folds == [1, 2]
    assert {r.fold for r in dataset} == {1, 2}
    fold2 = load_dataset("esc50", tmp_path, folds=[2])
    assert fold2.records == [r for r in layout.records if r.fold == 2]
    esc10 = load_dataset("esc50", tmp_path, esc10=True)  # classes 0 and 2
    assert esc10.classes == ["dog", "vacuum cleaner"]


def test_urbansound8k_paths_by_fold(tmp_path):
    write_layout("urbansound8k", tmp_path, classes=2, per_class=3, folds=3)
    dataset = load_dataset("urbansound8k", tmp_path)
    assert dataset.classes == ["air conditioner", "car horn"]
    assert all(r.path.parent.name == f"fold{r.fold}" for r in dataset)
    assert all(r.start is None for r in dataset)  # offsets in the source, not in the slice


def test_audioset_names_segments_and_missing_files(tmp_path):
    layout = write_layout("audioset", tmp_path, classes=3, per_class=2, missing=2)
    dataset = load_dataset("audioset", tmp_path)
    assert dataset.records == layout.records
    assert [why for _, why in dataset.skipped] == ["no local file"] * 2
    assert "Male speech, man speaking" in dataset.classes  # a quoted name with a comma
    assert any(len(r.labels) == 2 for r in dataset)
    assert {r.path.suffix for r in dataset} == {".wav", ".mp4"}
    assert dataset[1].start == 10.0 and dataset[1].end == 20.0

    (tmp_path / "class_labels_indices.csv").rename(tmp_path / "labels.csv")
    raw = load_dataset("audioset", tmp_path)  # no class labels: the MIDs are the labels
    assert raw[0].labels == ("/m/0bt9lr",)
    named = load_dataset("audioset", tmp_path, class_labels="labels.csv", media="downloads")
    assert named.records == layout.records

    only = tmp_path / "only"
    only.mkdir()
    (tmp_path / "eval_segments.csv").rename(only / "mine.csv")
    assert len(load_dataset("audioset", tmp_path, segments="only/mine.csv")) == len(layout.records)


def test_audioset_prefers_a_video_to_audio_of_the_same_name(tmp_path):
    layout = write_layout("audioset", tmp_path, classes=1, per_class=1, missing=0, video=False)
    audio = layout.records[0].path  # downloads/<YTID>.wav
    video = write_movie(audio.with_suffix(".mp4"), 0, 0)
    assert load_dataset("audioset", tmp_path)[0].path == video


def test_folders_skip_files_outside_class_folders(tmp_path):
    layout = write_layout("folders", tmp_path, classes=2, per_class=2)
    write_clip(tmp_path / "stray.wav", 3, 3)
    dataset = load_dataset("folders", tmp_path)
    assert dataset.records == layout.records
    assert dataset.skipped == [(str((tmp_path / "stray.wav").resolve()), "not in a class folder")]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_manifest_captions_folds_and_label_separators(tmp_path, fmt):
    layout = write_manifest(tmp_path, classes=2, per_class=3, fmt=fmt)
    dataset = load_dataset("manifest", tmp_path)  # the folder: finds manifest.<fmt>
    assert dataset.records == layout.records
    assert dataset[0].caption == "a dog number 0"
    assert dataset[1].labels == ("dog", "loud") and dataset[1].caption is None
    assert load_dataset("manifest", layout.root).records == layout.records


def test_manifest_without_fold_column(tmp_path):
    layout = write_manifest(tmp_path, fmt="csv", folds=0)
    assert all(r.fold is None for r in load_dataset("manifest", layout.root))
    with pytest.raises(UsageError, match="has no folds"):
        load_dataset("manifest", layout.root, folds=[1])


# ------------------------------------------------------------------------------- errors


def _rewrite_csv(path: Path, edit) -> None:
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    rows = edit(rows)
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows(rows)


def _set(rows, row, column, value):
    rows[row][rows[0].index(column)] = value
    return rows


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_kind_option_and_fold(tmp_path):
    write_layout("esc50", tmp_path)
    with pytest.raises(UsageError, match=r"unknown dataset kind 'esc-50'.*esc50"):
        load_dataset("esc-50", tmp_path)
    with pytest.raises(UsageError, match="unknown option"):
        load_dataset("esc50", tmp_path, media="x")
    with pytest.raises(UsageError, match=r"no fold 7 .*folds 1, 2"):
        load_dataset("esc50", tmp_path, folds=[7])


def test_missing_metadata_and_root(tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        load_dataset("esc50", tmp_path / "nowhere")
    with pytest.raises(UsageError, match=r"esc50\.csv: no such file") as excinfo:
        load_dataset("esc50", tmp_path)
    _one_line(excinfo)
    with pytest.raises(UsageError, match=r"UrbanSound8K\.csv: no such file"):
        load_dataset("urbansound8k", tmp_path)
    with pytest.raises(UsageError, match=r"eval_segments\.csv"):
        load_dataset("audioset", tmp_path)
    with pytest.raises(UsageError, match=r"no manifest\.csv or manifest\.jsonl"):
        load_dataset("manifest", tmp_path)
    with pytest.raises(UsageError, match="no media files in class folders"):
        load_dataset("folders", tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: _set(rows, 1, "fold", "one"), r"esc50\.csv:2: fold 'one' is not a whole"),
        (lambda rows: _set(rows, 2, "fold", "7"), r"esc50\.csv:3: fold 7 is not one of 1-5"),
        (lambda rows: _set(rows, 1, "category", ""), r"esc50\.csv:2: empty 'category'"),
        (lambda rows: _set(rows, 1, "filename", "../meta/esc50.csv"), "is outside"),
        (lambda rows: _set(rows, 1, "filename", "absent.wav"), "cannot be found.*absent.wav"),
    ],
    ids=["fold-text", "fold-range", "empty-category", "escape", "absent"],
)
def test_malformed_esc50(tmp_path, edit, message):
    write_layout("esc50", tmp_path)
    _rewrite_csv(tmp_path / "meta" / "esc50.csv", edit)
    with pytest.raises(UsageError, match=message) as excinfo:
        load_dataset("esc50", tmp_path)
    _one_line(excinfo)


def test_esc50_missing_column_is_named(tmp_path):
    write_layout("esc50", tmp_path)
    drop = lambda rows: [r[:1] + r[2:] for r in rows]  # noqa: E731
    _rewrite_csv(tmp_path / "meta" / "esc50.csv", drop)
    with pytest.raises(UsageError, match="no column 'fold'"):
        load_dataset("esc50", tmp_path)


def test_urbansound8k_bad_fold(tmp_path):
    write_layout("urbansound8k", tmp_path)
    _rewrite_csv(
        tmp_path / "metadata" / "UrbanSound8K.csv", lambda rows: _set(rows, 1, "fold", "11")
    )
    with pytest.raises(UsageError, match=r"UrbanSound8K\.csv:2: fold 11 is not one of 1-10"):
        load_dataset("urbansound8k", tmp_path)


def test_malformed_audioset(tmp_path):
    write_layout("audioset", tmp_path)
    segments = tmp_path / "eval_segments.csv"
    text = segments.read_text()
    segments.write_text(text + 'extra0000001, 0.000, 10.000, "/m/unknown"\n')
    with pytest.raises(UsageError, match=r"eval_segments\.csv:\d+: label '/m/unknown' is not"):
        load_dataset("audioset", tmp_path)
    segments.write_text(text + "extra0000001, 0.000, 10.000\n")
    with pytest.raises(UsageError, match=r"expected YTID, start_seconds.*got 3 fields"):
        load_dataset("audioset", tmp_path)
    segments.write_text(text + 'extra0000001, zero, 10.000, "/m/0bt9lr"\n')
    with pytest.raises(UsageError, match="start_seconds 'zero' is not a number"):
        load_dataset("audioset", tmp_path)
    segments.write_text('nothere0001, 0.000, 10.000, "/m/0bt9lr"\n')
    with pytest.raises(UsageError, match="none of its 1 segments has a local file"):
        load_dataset("audioset", tmp_path)


def test_manifest_refuses_paths_outside_its_folder(tmp_path):
    outside = write_clip(tmp_path / "secret.wav", 0, 0)
    root = tmp_path / "collection"
    write_clip(root / "a.wav", 1, 1)
    os.symlink(outside, root / "link.wav")
    cases = {"../secret.wav": "escape", str(outside): "absolute", "link.wav": "symlink"}
    for value in cases:
        (root / "manifest.csv").write_text(f"path,labels\na.wav,x\n{value},y\n")
        with pytest.raises(UsageError, match=r"manifest\.csv:3: .* is outside .*allow_outside"):
            load_dataset("manifest", root)
        dataset = load_dataset("manifest", root, allow_outside=True)
        assert dataset[1].path == outside


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,caption\na.wav,x\n", "no column 'labels'"),
        ("path,labels\na.wav,\n", r"manifest\.csv:2: no labels"),
        ("path,labels\nb.wav,x\n", "cannot be found.*b.wav"),
        ("path,labels\na.wav,x\na.wav,y\n", r":3: 'a.wav' is listed again \(first on line 2\)"),
        ("path,labels\nmanifest.csv,x\n", "not an audio, image or video file"),
        ("path,labels,fold\na.wav,x,0\n", "fold 0 is not a positive whole number"),
    ],
)
def test_malformed_manifest_csv(tmp_path, content, message):
    write_clip(tmp_path / "a.wav", 0, 0)
    (tmp_path / "manifest.csv").write_text(content)
    with pytest.raises(UsageError, match=message) as excinfo:
        load_dataset("manifest", tmp_path / "manifest.csv")
    _one_line(excinfo)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"manifest\.jsonl:1: bad JSON"),
        ('["a.wav"]', "expected an object with a string 'path'"),
        ('{"path": "a.wav"}', "'labels' must be a list of strings or a string"),
        ('{"path": "a.wav", "labels": ["x"], "caption": 3}', "'caption' must be a string"),
        ('{"path": "a.wav", "labels": ["x"], "fold": 1.5}', "fold 1.5 is not a whole number"),
    ],
)
def test_malformed_manifest_jsonl(tmp_path, line, message):
    write_clip(tmp_path / "a.wav", 0, 0)
    (tmp_path / "manifest.jsonl").write_text(line + "\n")
    with pytest.raises(UsageError, match=message):
        load_dataset("manifest", tmp_path)


def test_manifest_in_both_formats_is_ambiguous(tmp_path):
    write_clip(tmp_path / "a.wav", 0, 0)
    (tmp_path / "manifest.csv").write_text("path,labels\na.wav,x\n")
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.wav", "labels": "x"}\n')
    with pytest.raises(UsageError, match=r"both manifest\.csv and manifest\.jsonl"):
        load_dataset("manifest", tmp_path)


# ------------------------------------------------------------- ingest hook and eval index


def test_annotations_replace_sidecars_and_folder_labels(tmp_path, encoder):
    annotated = write_clip(tmp_path / "dogs" / "a.wav", 0, 0)
    plain = write_clip(tmp_path / "dogs" / "b.wav", 1, 1)
    for path in (annotated, plain):
        path.with_suffix(".json").write_text(json.dumps({"text": "side", "labels": ["side"]}))
    opts = IngestOptions(
        workers=0,
        labels_from_folder=True,
        annotations={str(annotated): Annotation(["bark", "dog"], ["a dog barks"])},
    )
    ingest([annotated, plain], tmp_path / "idx", encoder, opts)
    store = Store.open(tmp_path / "idx")
    assets = {Path(a["path"]).name: a for a in store.assets.to_pylist()}
    assert assets["a.wav"]["labels"] == ["bark", "dog"]
    assert assets["b.wav"]["labels"] == ["side", "dogs"]  # not annotated: as before
    texts = {i["asset_id"]: i["text"] for i in store.items.to_pylist() if i["modality"] == "text"}
    assert texts == {
        assets["a.wav"]["asset_id"]: "a dog barks",
        assets["b.wav"]["asset_id"]: "side",
    }


def _indexed(index: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """path -> labels, and path -> texts of its text items."""
    store = Store.open(index)
    assets = store.assets.to_pylist()
    by_id = {a["asset_id"]: a["path"] for a in assets}
    texts: dict[str, list[str]] = {}
    for item in store.items.to_pylist():
        if item["modality"] == "text":
            texts.setdefault(by_id[item["asset_id"]], []).append(item["text"])
    return {a["path"]: a["labels"] for a in assets}, texts


def test_build_index_gives_records_their_labels_and_captions(tmp_path, encoder):
    layout = write_manifest(tmp_path / "data", classes=2, per_class=2, fmt="jsonl")
    dataset = load_dataset("manifest", layout.root)
    index = tmp_path / "indexes" / eval_index_name("manifest")
    report = build_index(dataset, index, encoder, options())
    assert (report.records, report.indexed, report.missing, report.rebuilt) == (4, 4, [], False)
    labels, texts = _indexed(index)
    assert labels == {str(r.path): list(r.labels) for r in dataset}
    assert texts == {str(r.path): [r.caption] for r in dataset if r.caption}
    items = Store.open(index).items.to_pylist()
    assert {i["modality"] for i in items} == {"audio", "image", "text"}
    assert json.loads((index / EVAL_MARKER).read_text())["records"] == 4

    again = build_index(dataset, index, encoder, options())  # same records: nothing to do
    assert again.ingest.items == {} and again.ingest.generation == report.ingest.generation

    relabelled = [Record(r.path, ("other",), None, r.fold) for r in dataset]
    changed = build_index(relabelled, index, encoder, options())
    assert changed.rebuilt and changed.indexed == 4
    labels, texts = _indexed(index)
    assert set(map(tuple, labels.values())) == {("other",)} and texts == {}

    fewer = build_index(relabelled[:2], index, encoder, options())
    assert fewer.rebuilt and len(Store.open(index).assets) == 2


def test_build_index_reports_files_that_failed(tmp_path, encoder):
    good = write_clip(tmp_path / "a.wav", 0, 0)
    broken = tmp_path / "b.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    records = [Record(good, ("x",)), Record(broken.resolve(), ("y",))]
    report = build_index(records, tmp_path / "idx", encoder, options())
    assert report.indexed == 1
    assert [p for p, _ in report.missing] == [str(broken.resolve())]
    assert report.missing == report.failed  # with the decoder's reason


def test_build_index_refuses_other_indexes(tmp_path, encoder):
    clip = write_clip(tmp_path / "a.wav", 0, 0)
    ingest([clip], tmp_path / "plain", encoder, options())
    with pytest.raises(UsageError, match="other than an evaluation index"):
        build_index([Record(clip, ("x",))], tmp_path / "plain", encoder, options())
    assert Store.open(tmp_path / "plain").generation == 1  # left alone
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert build_index([Record(clip, ("x",))], tmp_path / "empty", encoder, options()).indexed
    with pytest.raises(UsageError, match="no records"):
        build_index([], tmp_path / "new", encoder, options())
    with pytest.raises(UsageError, match="listed twice"):
        build_index([Record(clip, ("x",))] * 2, tmp_path / "new", encoder, options())
