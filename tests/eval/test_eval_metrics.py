"""Retrieval metrics: hand-computed cases, scikit-learn's AP, and brute force over tie orders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from xsearch.eval.metrics import (
    average_precisions,
    interpolated_precision,
    retrieval_metrics,
    zero_shot_accuracy,
)


def test_hand_computed_ranking():
    # one query, ranking: R N R N N (relevant at ranks 1 and 3)
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    relevant = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    m = retrieval_metrics(scores, relevant)
    assert m["P@1"] == 1.0
    assert m["R@1"] == 0.5 and m["R@5"] == 1.0
    assert m["HR@1"] == 1.0
    assert m["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["MRR"] == 1.0
    assert (m["queries"], m["skipped"]) == (1, 0)


def test_second_query_and_one_without_relevant_items():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [0.5, 0.4, 0.3]])
    relevant = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1]], dtype=bool)
    m = retrieval_metrics(scores, relevant)
    assert (m["queries"], m["skipped"]) == (2, 1)
    # query 0: ranking N N R -> AP 1/3, RR 1/3, P@1 0; query 2: N R R -> AP (1/2 + 2/3)/2
    assert m["P@1"] == 0.0
    assert m["mAP"] == pytest.approx((1 / 3 + (1 / 2 + 2 / 3) / 2) / 2)
    assert m["MRR"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["R@1"] == 0.0 and m["HR@5"] == 1.0
    assert m["R@5"] == 1.0  # every relevant item is within the first five


def test_excluded_candidates_are_not_ranked():
    scores = np.array([[1.0, 0.5, 0.4]])  # the query itself scores 1.0
    relevant = np.array([[1, 0, 1]], dtype=bool)
    exclude = np.array([[1, 0, 0]], dtype=bool)
    m = retrieval_metrics(scores, relevant, exclude)
    assert m["P@1"] == 0.0 and m["mAP"] == pytest.approx(0.5) and m["MRR"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_ap_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((30, 40)), 1)  # coarse scores: many ties
    relevant = rng.random((30, 40)) < 0.2
    relevant[0] = False  # a query without relevant items is skipped
    ours = average_precisions(scores, relevant)
    assert np.isnan(ours[0])
    want = [average_precision_score(r, s) for s, r in zip(scores[1:], relevant[1:])]
    assert ours[1:] == pytest.approx(want, abs=1e-12)
    assert retrieval_metrics(scores, relevant)["mAP"] == pytest.approx(np.mean(want))


def _plain(order_scores, rel):
    """The metrics of one fixed ranking (no ties), computed the obvious way."""
    ranked = rel[order_scores]
    total = ranked.sum()
    hits = np.cumsum(ranked)
    out = {"P@1": float(ranked[0])}
    for k in (1, 5, 10):
        out[f"R@{k}"] = hits[k - 1] / total if k <= len(ranked) else 1.0
        out[f"HR@{k}"] = float(hits[min(k, len(ranked)) - 1] > 0)
    positions = np.flatnonzero(ranked) + 1
    out["mAP"] = float(np.mean(np.arange(1, total + 1) / positions))
    out["MRR"] = 1.0 / positions[0]
    return out


@pytest.mark.parametrize("seed", range(8))
def test_rank_metrics_are_the_mean_over_every_tie_order(seed):
    rng = np.random.default_rng(100 + seed)
    n = 8
    scores = rng.choice([0.1, 0.5, 0.9], size=n)  # three tie groups
    rel = rng.random(n) < 0.4
    if not rel.any():
        rel[rng.integers(n)] = True
    m = retrieval_metrics(scores[None], rel[None])
    # every order that sorts by score, breaking ties every possible way
    orders = [p for p in itertools.permutations(range(n)) if all(np.diff(scores[list(p)]) <= 0)]
    runs = [_plain(np.array(p), rel) for p in orders]
    for name in ("P@1", "R@1", "R@5", "HR@1", "HR@5", "MRR"):
        assert m[name] == pytest.approx(np.mean([r[name] for r in runs]), abs=1e-12), name


def test_zero_shot_accuracy():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.7, 0.2]])
    assert zero_shot_accuracy(scores, np.array([0, 1, 0, 1])) == pytest.approx((1 + 1 + 0.5) / 4)


def test_interpolated_precision_curve():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    relevant = np.array([[1, 0, 1, 0]], dtype=bool)
    levels, precision = interpolated_precision(scores, relevant, points=3)
    assert levels.tolist() == [0.0, 0.5, 1.0]
    assert precision == pytest.approx([1.0, 1.0, 2 / 3])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2-d"):
        retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 2), bool))
