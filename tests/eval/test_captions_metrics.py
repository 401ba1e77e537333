"""Caption-retrieval metrics (R@1/5/10, mAP@10): hand-computed cases, the papers' own recipe
on a Clotho-shaped score matrix, and brute force over every order of tied candidates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from xsearch.eval.metrics import caption_metrics


def _paper_style(audio_by_text: np.ndarray, captions: int) -> dict[str, float]:
    """Text -> audio and audio -> text metrics computed the way the caption-retrieval papers'
    evaluation code does (argsort ranks; clip a's captions are rows a*captions ...), for
    scores without ties. Returns {direction/metric: value}."""
    clips = audio_by_text.shape[1]
    out = {}
    # text -> audio: each caption ranks the clips; its clip is the one relevant
    ranks = []
    for t in range(len(audio_by_text)):
        order = np.argsort(-audio_by_text[t])
        ranks.append(int(np.flatnonzero(order == t // captions)[0]))
    ranks = np.array(ranks)
    for k in (1, 5, 10):
        out[f"t2a R@{k}"] = float(np.mean(ranks < k))
    out["t2a mAP@10"] = float(np.mean(np.where(ranks < 10, 1 / (ranks + 1), 0.0)))
    # audio -> text: each clip ranks the captions; R@k by its best caption, AP@10 over all 5
    best, aps = [], []
    for a in range(clips):
        order = np.argsort(-audio_by_text[:, a])
        own = np.sort(
            [int(np.flatnonzero(order == t)[0]) for t in range(a * captions, (a + 1) * captions)]
        )
        best.append(own[0])
        kept = own[own < 10]
        aps.append(np.sum(np.arange(1, len(kept) + 1) / (kept + 1)) / captions)
    best = np.array(best)
    for k in (1, 5, 10):
        out[f"a2t R@{k}"] = float(np.mean(best < k))
    out["a2t mAP@10"] = float(np.mean(aps))
    return out


def test_hand_computed_audio_to_text():
    # one clip, 12 captions, its 5 own captions at ranks 2, 4, 11, 12 and beyond
    scores = -np.arange(14, dtype=float)[None]  # rank i+1 for column i
    relevant = np.zeros((1, 14), bool)
    relevant[0, [1, 3, 10, 11, 13]] = True
    m = caption_metrics(scores, relevant)
    assert m["R@1"] == 0.0 and m["R@5"] == 1.0 and m["R@10"] == 1.0
    assert m["mAP@10"] == pytest.approx((1 / 2 + 2 / 4) / 5)  # ranks past 10 add nothing
    assert (m["queries"], m["skipped"]) == (1, 0)


def test_hand_computed_text_to_audio():
    # three captions, four clips: the own clip at rank 1, rank 3 and rank 11 (out of 12)
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.5, 0.9, 0.1, 0.7], [0.1, 0.2, 0.3, 0.4]])
    relevant = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    m = caption_metrics(scores, relevant)
    # caption 0: rank 1; caption 1: rank 3; caption 2 has no clip here: skipped
    assert (m["queries"], m["skipped"]) == (2, 1)
    assert m["R@1"] == 0.5 and m["R@5"] == 1.0
    assert m["mAP@10"] == pytest.approx((1 + 1 / 3) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_both_directions_match_the_papers_recipe(seed):
    """A Clotho-shaped problem: 30 clips of 5 captions, scores without ties."""
    rng = np.random.default_rng(seed)
    clips, captions = 30, 5
    clip_vectors = rng.standard_normal((clips, 16))
    caption_vectors = np.repeat(clip_vectors, captions, axis=0) + 1.5 * rng.standard_normal(
        (clips * captions, 16)
    )
    audio_by_text = caption_vectors @ clip_vectors.T  # (captions, clips)
    want = _paper_style(audio_by_text, captions)
    caption_clip = np.repeat(np.arange(clips), captions)
    t2a = caption_metrics(audio_by_text, caption_clip[:, None] == np.arange(clips)[None])
    a2t = caption_metrics(audio_by_text.T, np.arange(clips)[:, None] == caption_clip[None])
    assert t2a["queries"] == clips * captions and a2t["queries"] == clips
    for name in ("R@1", "R@5", "R@10", "mAP@10"):
        assert t2a[name] == pytest.approx(want[f"t2a {name}"], abs=1e-12), name
        assert a2t[name] == pytest.approx(want[f"a2t {name}"], abs=1e-12), name
    assert 0 < a2t["R@1"] < 1 and 0 < t2a["mAP@10"] < 1  # neither trivial nor hopeless


def _fixed_orders(orders: np.ndarray, rel: np.ndarray) -> dict[str, np.ndarray]:
    """R@k and AP@10 of fixed rankings (one a row, no ties), from the definitions."""
    ranked = rel[orders]
    out = {f"R@{k}": ranked[:, :k].any(axis=1).astype(float) for k in (1, 5, 10)}
    precision_at = np.cumsum(ranked, axis=1) / np.arange(1, ranked.shape[1] + 1)
    out["mAP@10"] = (precision_at * ranked)[:, :10].sum(axis=1) / ranked.sum(axis=1)
    return out


def _tie_orders(scores: np.ndarray) -> np.ndarray:
    """Every ranking by descending score, ties broken every possible way (one a row)."""
    groups = [np.flatnonzero(scores == v) for v in sorted(set(scores), reverse=True)]
    parts = itertools.product(*(itertools.permutations(g) for g in groups))
    return np.array([np.concatenate(p) for p in parts])


@pytest.mark.parametrize("seed", range(6))
def test_ties_take_the_mean_over_every_order(seed):
    """Tie groups of 2, 4, 5 and 2 candidates: they straddle the cutoffs 1, 5 and 10."""
    rng = np.random.default_rng(500 + seed)
    values = np.repeat([0.9, 0.6, 0.4, 0.1], [2, 4, 5, 2])
    scores = np.stack([rng.permutation(values) for _ in range(2)])
    relevant = rng.random(scores.shape) < 0.35
    relevant[:, 0] |= ~relevant.any(axis=1)  # every query has a relevant candidate
    m = caption_metrics(scores, relevant)
    per_query = []
    for q in range(len(scores)):
        runs = _fixed_orders(_tie_orders(scores[q]), relevant[q])
        per_query.append({k: v.mean() for k, v in runs.items()})
    for name in ("R@1", "R@5", "R@10", "mAP@10"):
        want = np.mean([p[name] for p in per_query])
        assert m[name] == pytest.approx(want, abs=1e-12), name


def test_all_tied_is_chance():
    scores = np.zeros((1, 20))
    relevant = np.zeros((1, 20), bool)
    relevant[0, 7] = True  # one relevant among 20 tied candidates
    m = caption_metrics(scores, relevant)
    assert m["R@1"] == pytest.approx(1 / 20) and m["R@10"] == pytest.approx(10 / 20)
    assert m["mAP@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 20)


def test_no_query_with_a_relevant_candidate_and_bad_shapes():
    m = caption_metrics(np.zeros((2, 3)), np.zeros((2, 3), bool))
    assert m["queries"] == 0 and m["skipped"] == 2 and np.isnan(m["R@1"])
    with pytest.raises(ValueError, match="2-d"):
        caption_metrics(np.zeros((2, 3)), np.zeros((3, 2), bool))
