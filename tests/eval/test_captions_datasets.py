"""Caption dataset adapters (xsearch.eval.caption_datasets): Clotho and AudioCaps layouts, their
splits, the CSV quirks of the real files, and missing clips."""

from __future__ import annotations

import csv

import pytest

from tests.helpers.caption_layouts import caption, write_audiocaps, write_clotho, write_tone
from xsearch.errors import UsageError
from xsearch.eval.caption_datasets import CAPTION_ADAPTERS
from xsearch.eval.datasets import ADAPTERS, load_dataset


def test_clotho_reads_captions_with_quoted_commas_and_a_bom(tmp_path):
    layout = write_clotho(tmp_path, clips=3)
    raw = (tmp_path / "clotho_captions_evaluation.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b'"sound 0, take 0: a tone ""loud""' in raw
    dataset = load_dataset("clotho", tmp_path)  # the default split: evaluation
    assert dataset.kind == "clotho" and dataset.records == layout.records
    first = dataset[0]
    assert (
        first.labels == () and first.captions[0] == 'sound 0, take 0: a tone "loud" and some noise'
    )
    assert len(first.captions) == 5 and first.texts == first.captions
    assert first.path.name == "clip 0 take.wav" and first.path.parent.name == "evaluation"
    assert dataset.classes == [] and dataset.skipped == []


def test_clotho_splits(tmp_path):
    write_clotho(tmp_path, clips=2)
    development = write_clotho(tmp_path, clips=4, split="development", first=10)
    dataset = load_dataset("clotho", tmp_path, split="development")
    assert dataset.records == development.records
    assert len(load_dataset("clotho", tmp_path)) == 2
    with pytest.raises(UsageError, match=r"unknown split 'test'.*development, validation"):
        load_dataset("clotho", tmp_path, split="test")
    with pytest.raises(UsageError, match=r"clotho_captions_validation.csv: no such file"):
        load_dataset("clotho", tmp_path, split="validation")


def test_clotho_audio_folder_as_some_unpackers_name_it(tmp_path):
    layout = write_clotho(tmp_path, clips=2)
    (tmp_path / "evaluation").rename(tmp_path / "clotho_audio_evaluation")
    dataset = load_dataset("clotho", tmp_path)
    assert [r.path.parent.name for r in dataset] == ["clotho_audio_evaluation"] * 2
    assert [r.captions for r in dataset] == [r.captions for r in layout.records]


def test_clotho_missing_clips_are_one_line_or_skipped(tmp_path):
    write_clotho(tmp_path, clips=2, missing=5)
    with pytest.raises(UsageError) as caught:
        load_dataset("clotho", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "5 files it lists cannot be found" in message
    assert "clip 2 take.wav" in message and "clip 4 take.wav" in message  # the first three
    assert "clip 5 take.wav" not in message and "..." in message
    assert "skip_missing" in message
    dataset = load_dataset("clotho", tmp_path, skip_missing=True)
    assert len(dataset) == 2
    assert [why for _, why in dataset.skipped] == ["no local file"] * 5
    assert dataset.skipped[0][0].endswith("clip 2 take.wav")


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([["a.wav", "", "", "", "", ""]], "no caption for 'a.wav'"),
        ([["a.wav", "x", "", "", "", ""], ["a.wav", "y", "", "", "", ""]], "listed again"),
        ([["../a.wav", "x", "", "", "", ""]], "outside"),
        ([["", "x", "", "", "", ""]], "empty 'file_name'"),
    ],
)
def test_clotho_bad_rows(tmp_path, rows, needle):
    write_tone(tmp_path / "evaluation" / "a.wav", 0)
    with open(tmp_path / "clotho_captions_evaluation.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file_name", *(f"caption_{n}" for n in range(1, 6))])
        writer.writerows(rows)
    with pytest.raises(UsageError, match=needle) as caught:
        load_dataset("clotho", tmp_path)
    assert "clotho_captions_evaluation.csv:2" in str(caught.value) or "listed again" in needle


def test_clotho_fewer_captions_and_columns_out_of_order(tmp_path):
    write_tone(tmp_path / "evaluation" / "a.wav", 0)
    (tmp_path / "clotho_captions_evaluation.csv").write_text(
        "caption_2,file_name,caption_1,caption_3\nsecond,a.wav,first,\n"
    )
    (record,) = load_dataset("clotho", tmp_path)
    assert record.captions == ("first", "second")  # by column number; empty cells dropped


def test_audiocaps_groups_captions_by_clip_and_finds_every_naming(tmp_path):
    layout = write_audiocaps(tmp_path, clips=5)
    dataset = load_dataset("audiocaps", tmp_path)  # the default split: test
    assert dataset.records == layout.records  # the CSV's clip order, captions in file order
    assert [r.path.name for r in dataset][:4] == [
        "-Yt00x_0AbC.wav", "Y_Yt01x_1AbC.wav", "aYt02x_2AbC_60.wav", "-Yt03x_3AbC_90000.wav",
    ]  # fmt: skip
    assert dataset[4].path.parent.name == "shard"
    assert dataset[1].captions[0] == caption(1, 0) and len(dataset[1].captions) == 5
    assert (dataset[2].start, dataset[2].end) == (60.0, 70.0)


def test_audiocaps_official_layout_split_and_media_option(tmp_path):
    layout = write_audiocaps(tmp_path, clips=2, split="val")
    (tmp_path / "dataset").mkdir()
    (tmp_path / "val.csv").rename(tmp_path / "dataset" / "val.csv")
    assert load_dataset("audiocaps", tmp_path, split="val").records == layout.records
    assert load_dataset("audiocaps", tmp_path, split="val", media="audio").records == (
        layout.records
    )
    with pytest.raises(UsageError, match=r"unknown split 'validation'.*train, val, test"):
        load_dataset("audiocaps", tmp_path, split="validation")
    with pytest.raises(UsageError, match="no such file or folder"):
        load_dataset("audiocaps", tmp_path, split="val", media="nowhere")


def test_audiocaps_prefers_audio_to_a_video_of_the_same_name(tmp_path):
    from tests.helpers.eval_layouts import write_movie

    layout = write_audiocaps(tmp_path, clips=1)
    write_movie(tmp_path / "audio" / "-Yt00x_0AbC.mp4", 0, 0)
    assert load_dataset("audiocaps", tmp_path).records == layout.records


def test_audiocaps_missing_clips_are_one_line_or_skipped(tmp_path):
    write_audiocaps(tmp_path, clips=2, missing=4)
    with pytest.raises(UsageError) as caught:
        load_dataset("audiocaps", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "test.csv: 4 clips it lists have no file under" in message
    assert "e.g. aYt02x_2AbC, -Yt03x_3AbC, _Yt04x_4AbC, ..." in message
    dataset = load_dataset("audiocaps", tmp_path, skip_missing=True)
    assert len(dataset) == 2 and dataset.skipped[0][0] == "aYt02x_2AbC"
    for path in (tmp_path / "audio").rglob("*.wav"):
        path.unlink()
    with pytest.raises(UsageError, match="none of its 6 clips has a file"):
        load_dataset("audiocaps", tmp_path, skip_missing=True)


def test_audiocaps_bad_rows(tmp_path):
    (tmp_path / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,abc,x,hi\n")
    with pytest.raises(UsageError, match=r"test.csv:2: start_time 'x' is not a number"):
        load_dataset("audiocaps", tmp_path)
    (tmp_path / "test.csv").write_text("audiocap_id,youtube_id,caption\n1,abc,hi\n")
    with pytest.raises(UsageError, match="no column 'start_time'"):
        load_dataset("audiocaps", tmp_path)


def test_caption_kinds_are_known_beside_the_labelled_ones(tmp_path):
    assert set(CAPTION_ADAPTERS) == {"clotho", "audiocaps"}
    assert not set(CAPTION_ADAPTERS) & set(ADAPTERS)
    with pytest.raises(UsageError, match=r"known: esc50.*clotho, audiocaps"):
        load_dataset("clothoo", tmp_path)
    with pytest.raises(UsageError, match="esc50: unknown option"):
        load_dataset("esc50", tmp_path, split="evaluation")
