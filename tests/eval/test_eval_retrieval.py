"""Evaluation on planted embeddings: every label is a fixed direction, so the metrics are known."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.eval_layouts import CLASSES, DIRECTIONS, Planted, build
from xsearch.errors import UsageError
from xsearch.eval.retrieval import Evaluation, parse_pairs
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Store


@pytest.fixture
def clean(tmp_path) -> Store:
    """4 files per class, each with an audio item and an image item on its class direction."""
    files = [
        ([c], {"audio": [DIRECTIONS[c]], "image": [DIRECTIONS[c]]})
        for c in CLASSES
        for _ in range(4)
    ]
    return build(tmp_path / "clean", files)


def test_planted_directions_give_perfect_scores(clean):
    results = Evaluation(Planted(clean)).pairs(parse_pairs("text:audio,audio:image,audio:audio"))
    assert [(r.query, r.result) for r in results] == [
        ("text", "audio"),
        ("audio", "image"),
        ("audio", "audio"),
    ]
    text_audio, audio_image, audio_audio = (r.metrics for r in results)
    assert text_audio["queries"] == 3 and audio_image["queries"] == 12
    for m in (text_audio, audio_image, audio_audio):
        assert m["P@1"] == 1.0 and m["mAP"] == 1.0 and m["MRR"] == 1.0 and m["HR@1"] == 1.0
    assert text_audio["R@1"] == pytest.approx(1 / 4)  # 4 relevant per query
    assert audio_audio["R@1"] == pytest.approx(1 / 3)  # its own file left out: 3 remain
    assert audio_audio["R@5"] == 1.0


def test_a_misplaced_item_costs_what_the_formulas_say(tmp_path):
    files = [([c], {"audio": [DIRECTIONS[c]]}) for c in CLASSES for _ in range(4)]
    files[0] = (["dog"], {"audio": [DIRECTIONS["rain"]]})  # a dog file that sounds like rain
    store = build(tmp_path / "idx", files)
    (r,) = Evaluation(Planted(store)).pairs([("text", "audio")])
    # dog: 3 hits at score 1, then the misplaced one among 8 items tied at 0 (of 12)
    ap_dog = 3 / 4 * 1.0 + 1 / 4 * (4 / 12)
    # rain: its 4 and the misplaced dog tie at 1: precision 4/5 at that threshold
    ap_rain = 4 / 5
    assert r.metrics["mAP"] == pytest.approx((ap_dog + ap_rain + 1.0) / 3)
    assert r.metrics["P@1"] == pytest.approx((1 + 4 / 5 + 1) / 3)


def test_relevance_same_versus_any(tmp_path):
    both = DIRECTIONS["dog"] + DIRECTIONS["rain"]
    files = [
        (["dog"], {"audio": [DIRECTIONS["dog"]]}),
        (["dog", "rain"], {"audio": [both / np.linalg.norm(both)]}),
        (["rain"], {"audio": [DIRECTIONS["rain"]]}),
    ]
    store = build(tmp_path / "idx", files)
    same = Evaluation(Planted(store)).pair("text", "audio").metrics
    any_ = Evaluation(Planted(store), relevance="any").pair("text", "audio").metrics
    assert same["queries"] == any_["queries"] == 3  # label sets: dog, dog+rain, rain
    assert same["mAP"] == 1.0
    # with "any", the query "dog" has 2 relevant: itself (1.0) and dog+rain (0.71) -> AP 1
    assert any_["mAP"] == 1.0 and any_["R@1"] < same["R@1"]


def test_served_approximate_index_and_exact(clean):
    exact = Evaluation(Planted(clean), exact=True).pair("audio", "image").metrics
    served = Evaluation(Planted(clean)).pair("audio", "image").metrics
    assert served == pytest.approx(exact)
    rebuild_indexes(clean.dir, "IVF2,Flat")
    approx = Store.open(clean.dir)
    full = Evaluation(Planted(approx), nprobe=2).pair("audio", "image").metrics
    assert full == pytest.approx(exact)
    # one list of two: what the index never returns ranks last, so quality can only drop
    partial = Evaluation(Planted(approx), nprobe=1).pair("audio", "image").metrics
    assert partial["mAP"] <= exact["mAP"]


def test_zero_shot(tmp_path):
    files = [([c], {"audio": [DIRECTIONS[c]]}) for c in CLASSES for _ in range(2)]
    files.append((["dog"], {"audio": [DIRECTIONS["siren"]]}))  # one wrong
    files.append((["dog", "rain"], {"audio": [DIRECTIONS["dog"]]}))  # multi-label: skipped
    store = build(tmp_path / "idx", files)
    z = Evaluation(Planted(store)).zero_shot("audio")
    assert z == {"accuracy": pytest.approx(6 / 7), "items": 7, "classes": 3, "skipped": 1}
    first_two = set(range(2))
    assert Evaluation(Planted(store)).zero_shot("audio", assets=first_two)["accuracy"] == 1.0


def test_errors(clean, tmp_path):
    with pytest.raises(UsageError, match="bad pairing"):
        parse_pairs("text:video")
    with pytest.raises(UsageError, match="unknown relevance"):
        Evaluation(Planted(clean), relevance="some")
    unlabelled = build(tmp_path / "bare", [([], {"audio": [DIRECTIONS["dog"]]})])
    with pytest.raises(UsageError, match="no labels"):
        Evaluation(Planted(unlabelled))
    with pytest.raises(UsageError, match="none of the pairings"):
        Evaluation(Planted(clean)).pairs([("text", "text")])
