"""The `av-pairs` adapter: CAV-MAE's retrieval lists (a clip's sound and its extracted frame,
each the other's only match), read safely and evaluated as audio <-> image retrieval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from xsearch.api import evaluate_dataset
from xsearch.errors import UsageError
from xsearch.eval.datasets import load_dataset
from xsearch.samples import audio_samples, write_wav


def write_clips(root, clips, frame=5, missing=()):
    """The official layout: sounds in `audio/`, frames in `frames/frame_<k>/<id>.jpg`, and
    the data list, relative paths (`wav`, `video_path`) as given."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    waves = list(audio_samples(seconds=1.0).values())
    rng = np.random.default_rng(0)
    entries = []
    for number, clip in enumerate(clips):
        if clip not in missing:
            write_wav(root / "audio" / f"{clip}.wav", waves[number % len(waves)])
            folder = root / "frames" / f"frame_{frame}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{clip}.jpg")
        entries.append({"video_id": clip, "wav": f"audio/{clip}.wav", "video_path": "frames",
                        "labels": "/m/09x0r"})  # fmt: skip
    (root / "eval.json").write_text(json.dumps({"data": entries}))
    return root / "eval.json"


def test_each_clip_gives_its_sound_and_frame_labelled_by_its_id(tmp_path):
    listed = write_clips(tmp_path, ["a1", "b2", "c3"], missing=("b2",))
    dataset = load_dataset("av-pairs", tmp_path)  # the folder holding the list
    assert [(r.path.name, r.labels) for r in dataset] == [
        ("a1.wav", ("a1",)), ("a1.jpg", ("a1",)), ("c3.wav", ("c3",)), ("c3.jpg", ("c3",))
    ]  # fmt: skip
    assert dataset.skipped == [("b2", "no b2.wav or b2.jpg")]
    assert len(load_dataset("av-pairs", listed)) == 4


def test_paths_outside_the_lists_folder_are_refused_unless_allowed(tmp_path):
    inside = tmp_path / "list"
    write_clips(tmp_path, ["a1"])
    inside.mkdir()
    data = json.loads((tmp_path / "eval.json").read_text())
    data["data"][0]["wav"] = str(tmp_path / "audio" / "a1.wav")  # absolute, outside `list/`
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
    write_clips(tmp_path / "data", ["a1", "b2", "c3", "d4"])
    result = evaluate_dataset(
        "av-pairs", tmp_path / "data", home=tmp_path / "home", model="cav-mae-tiny",
        weights="random", workers=0, pairs="audio:image,image:audio",
    )  # fmt: skip
    assert [(r.query, r.result) for r in result.rows] == [("audio", "image"), ("image", "audio")]
    for row in result.rows:
        assert row.candidates == 4 and row.metrics["queries"] == 4
        assert 0.0 <= row.metrics["HR@1"] <= row.metrics["HR@5"] == 1.0  # 4 candidates
    assert result.random_weights
