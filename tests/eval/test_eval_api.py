"""`xsearch.api.evaluate` / `evaluate_dataset`: pairings from the index's own modalities,
options checked in neutral words, the result's JSON and plot, and a dataset evaluated with a
model of another width and modality set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.eval_layouts import CLASSES, DIRECTIONS, Planted, build, write_esc50
from xsearch.api import EvaluationResult, evaluate, evaluate_dataset, write_plot
from xsearch.errors import ParameterError, UsageError
from xsearch.models.fake import FakeEncoder, fake_spec
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Store

WIDTH = 1024  # the planted directions'


@pytest.fixture
def clean(tmp_path) -> Store:
    """3 files per class, each with an audio and an image item on its class direction."""
    files = [
        ([c], {"audio": [DIRECTIONS[c]], "image": [DIRECTIONS[c]]}) for c in CLASSES for _ in "abc"
    ]
    return build(tmp_path / "clean", files, {m: WIDTH for m in ("image", "audio", "text")})


@pytest.fixture
def audio_text(tmp_path) -> Store:
    """An index of an audio+text model: 2 audio files per class."""
    files = [([c], {"audio": [DIRECTIONS[c]]}) for c in CLASSES for _ in "ab"]
    return build(tmp_path / "at", files, {"audio": WIDTH, "text": WIDTH})


def test_pairings_default_to_the_index_modalities(audio_text):
    result = evaluate(Planted(audio_text))
    # of audio:audio, audio:text, text:audio, text:text, those with items on both sides
    assert [(r.query, r.result) for r in result.rows] == [("audio", "audio"), ("text", "audio")]
    assert list(result.zero_shot) == ["audio"]  # no image modality to classify
    assert result.zero_shot["audio"]["accuracy"] == 1.0
    assert all(r.metrics["mAP"] == 1.0 for r in result.rows)


def test_a_pairing_the_index_lacks_is_one_line(audio_text):
    with pytest.raises(ParameterError) as caught:
        evaluate(Planted(audio_text), pairs="audio:image")
    assert caught.value.param == "pairs"
    message = str(caught.value)
    assert "no image" in message and "audio, text" in message and "\n" not in message
    with pytest.raises(ParameterError, match="no image"):
        evaluate(Planted(audio_text), pairs=[("image", "audio")])


def test_pairs_as_text_or_tuples_agree(clean):
    as_text = evaluate(Planted(clean), pairs="text:audio, audio:image")
    as_tuples = evaluate(Planted(clean), pairs=[("text", "audio"), ("audio", "image")])
    assert [(r.query, r.result) for r in as_text.rows] == [("text", "audio"), ("audio", "image")]
    assert [r.metrics for r in as_text.rows] == [r.metrics for r in as_tuples.rows]
    assert as_text.rows[0].metrics["queries"] == len(CLASSES)
    assert all(r.metrics["P@1"] == 1.0 for r in as_text.rows)


@pytest.mark.parametrize(
    ("options", "param", "needle"),
    [
        ({"pairs": "text:video"}, "pairs", "bad pairing"),
        ({"pairs": "audio"}, "pairs", "bad pairing"),
        ({"pairs": [("text", "audio", "image")]}, "pairs", "bad pairing"),
        ({"relevance": "some"}, "relevance", "some"),
        ({"nprobe": 0}, "nprobe", "below 1"),
        ({"ef": 2.5}, "ef", "whole number"),
        ({"k_factor": 0.5}, "k_factor", "below 1"),
    ],
)
def test_options_are_refused_in_neutral_words(clean, options, param, needle):
    with pytest.raises(ParameterError) as caught:
        evaluate(Planted(clean), **options)
    assert caught.value.param == param and needle in str(caught.value)
    assert "--" not in str(caught.value)  # no command-line spelling in the library


def test_result_as_json_exact_comparison_and_plot(clean, tmp_path):
    rebuild_indexes(clean.dir, "IVF3,Flat")
    index = Planted(Store.open(clean.dir))
    result = evaluate(index, "audio:image", compare_exact=True, nprobe=1, curves=True)
    assert isinstance(result, EvaluationResult)
    data = json.loads(json.dumps(result.as_dict()))  # plain JSON
    assert data["index"] == "planted" and data["relevance"] == "same"
    assert data["generation"] == index.store.generation and data["random_weights"] is True
    assert data["model"]["config"] == "audioclip-tiny"
    (served,), (exact,) = data["pairs"], data["exact"]
    assert exact["mAP"] == 1.0 and served["mAP"] <= exact["mAP"]
    assert len(served["pr_curve"]["recall"]) == 101
    png = result.write_plot(tmp_path / "pr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without = evaluate(index, "audio:image")
    assert "pr_curve" not in without.as_dict()["pairs"][0]
    with pytest.raises(UsageError, match="curves=True"):
        write_plot(without, tmp_path / "none.png")


def test_evaluate_a_dataset_with_a_model_of_another_width(tmp_path):
    """ESC-50 layout, a torch-free 512-d audio+text model: the index gets its modalities."""
    layout = write_esc50(tmp_path / "esc50", classes=3, per_class=2, folds=2)
    encoder = FakeEncoder(fake_spec(512, ("audio", "text")))
    home = tmp_path / "home"
    with pytest.raises(ParameterError, match="no image"):  # refused before any ingest
        evaluate_dataset("esc50", layout.root, home=home, encoder=encoder, pairs="audio:image")
    assert not (home / "eval-esc50").exists()
    result = evaluate_dataset("esc50", layout.root, home=home, encoder=encoder, workers=0)
    assert result.index == "eval-esc50" and result.dataset == "esc50" and result.name == "esc50"
    assert Store.open(home / "eval-esc50").widths == {"audio": 512, "text": 512}
    pairs = {(r.query, r.result): r for r in result.rows}
    assert set(pairs) == {("audio", "audio"), ("text", "audio")}
    assert pairs[("text", "audio")].metrics["queries"] == 3  # one per class name
    assert pairs[("text", "audio")].candidates == 6
    assert result.zero_shot["audio"]["items"] == 6 and result.left_out == []
    dataset = result.as_dict()["dataset"]
    assert dataset == {"kind": "esc50", "records": 6, "indexed": 6, "rebuilt": False,
                       "left_out": []}  # fmt: skip
    folds = evaluate_dataset(
        "esc50", layout.root, home=home, encoder=encoder, workers=0, options={"folds": [1]}
    )
    assert folds.build.rebuilt and folds.as_dict()["dataset"]["records"] == 3
    with pytest.raises(ParameterError, match="esc51"):
        evaluate_dataset("esc51", layout.root, home=home, encoder=encoder)


def test_an_index_object_evaluates_itself(clean):
    """`Index.evaluate` is the same call."""
    from xsearch.api import open_index

    index = open_index(clean.dir.name, clean.dir.parent)
    with pytest.raises(ParameterError, match="bad pairing"):
        index.evaluate(pairs="text:video")
    assert np.isfinite(index.evaluate(pairs="audio:image").rows[0].metrics["mAP"])


def test_records_left_out_are_reported(tmp_path):
    """AudioSet downloads are incomplete: segments without a file are in `left_out`."""
    from tests.helpers.eval_layouts import write_audioset

    layout = write_audioset(tmp_path / "audioset", classes=2, per_class=2, missing=2, video=False)
    encoder = FakeEncoder(fake_spec(256, ("audio", "text")))
    result = evaluate_dataset(
        "audioset", layout.root, home=tmp_path / "home", encoder=encoder, workers=0
    )
    assert result.left_out == layout.skipped and len(layout.skipped) == 2
    left = result.as_dict()["dataset"]["left_out"]
    assert [(x["path"], x["reason"]) for x in left] == layout.skipped
