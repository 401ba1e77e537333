"""The `av-pairs` adapter: CAV-MAE's retrieval lists (a clip's sound and its extracted frame,
each the other's only match), read safely and evaluated as audio <-> image retrieval. The
layout itself is checked with every adapter's (tests/eval/test_eval_datasets.py)."""

from __future__ import annotations

import json

import pytest

from tests.helpers.eval_layouts import write_layout
from xsearch.api import evaluate_dataset
from xsearch.errors import UsageError
from xsearch.eval.datasets import load_dataset


def test_each_clip_gives_its_sound_and_frame_labelled_by_its_id(tmp_path):
    layout = write_layout("av-pairs", tmp_path, clips=3, missing=(1,))
    dataset = load_dataset("av-pairs", tmp_path)  # the folder holding the list
    assert [(r.path.name, r.labels) for r in dataset] == [
        ("vid0.wav", ("vid0",)), ("vid0.jpg", ("vid0",)), ("vid2.wav", ("vid2",)),
        ("vid2.jpg", ("vid2",)),
    ]  # fmt: skip
    assert dataset.skipped == [("vid1", "no vid1.wav or vid1.jpg")]
    assert load_dataset("av-pairs", tmp_path / "eval.json").records == layout.records


def test_paths_outside_the_lists_folder_are_refused_unless_allowed(tmp_path):
    write_layout("av-pairs", tmp_path, clips=1, missing=())
    inside = tmp_path / "list"
    inside.mkdir()
    data = json.loads((tmp_path / "eval.json").read_text())
    data["data"][0]["wav"] = str(tmp_path / "audio" / "vid0.wav")  # absolute, outside `list/`
    data["data"][0]["video_path"] = str(tmp_path / "frames")
    (inside / "eval.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="is outside"):
        load_dataset("av-pairs", inside)
    assert len(load_dataset("av-pairs", inside, allow_outside=True)) == 2


@pytest.mark.parametrize(
    ("content", "needle"),
    [("[]", "not a data list"), ('{"data": [{"wav": "x"}]}', "lacks video_id"), ("{", "not a")],
)
def test_a_bad_list_is_one_line(tmp_path, content, needle):
    (tmp_path / "eval.json").write_text(content)
    with pytest.raises(UsageError, match=needle) as caught:
        load_dataset("av-pairs", tmp_path / "eval.json")
    assert "\n" not in str(caught.value)


def test_evaluated_as_audio_and_image_retrieval_with_a_cav_mae_model(tmp_path):
    write_layout("av-pairs", tmp_path / "data", clips=4, missing=())
    result = evaluate_dataset(
        "av-pairs", tmp_path / "data", home=tmp_path / "home", model="cav-mae-tiny",
        weights="random", workers=0, pairs="audio:image,image:audio",
    )  # fmt: skip
    assert [(r.query, r.result) for r in result.rows] == [("audio", "image"), ("image", "audio")]
    for row in result.rows:
        assert row.candidates == 4 and row.metrics["queries"] == 4
        assert 0.0 <= row.metrics["HR@1"] <= row.metrics["HR@5"] == 1.0  # 4 candidates
    assert result.random_weights
