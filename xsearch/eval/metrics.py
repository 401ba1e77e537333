"""Retrieval metrics over a score matrix, with ties counted exactly.

Every metric is computed per query over the candidates ranked by score, then averaged over the
queries that have at least one relevant candidate (the others are left out and counted).

Ties: candidates with equal scores share a rank group, and rank-based metrics take their
expected value over a uniformly random order inside each group (McSherry and Najork, ECIR 2008),
so a metric never depends on the order in which candidates happen to be stored. Average
precision steps through the distinct scores, the tie treatment of scikit-learn's
`average_precision_score`.
"""

from __future__ import annotations

import numpy as np

CUTOFFS = (1, 5, 10)
CAPTION_MAP_CUTOFF = 10  # the mAP@10 of the caption-retrieval papers


def retrieval_metrics(
    scores: np.ndarray, relevant: np.ndarray, exclude: np.ndarray | None = None
) -> dict[str, float | int]:
    """P@1, R@1/5/10, HR@1/5/10, mAP and MRR as fractions in [0, 1], with `queries` (the number
    averaged over) and `skipped` (queries without a relevant candidate).

    `scores` and `relevant` are (queries x candidates); `exclude` marks candidates that a query
    must not see (the query itself, in same-modality retrieval)."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape}: not one 2-d shape")
    per_query = []
    skipped = 0
    for q in range(len(scores)):
        keep = slice(None) if exclude is None else ~np.asarray(exclude[q], dtype=bool)
        groups = _rank_groups(scores[q][keep], relevant[q][keep])
        if groups is None:
            skipped += 1
            continue
        per_query.append(_query_metrics(*groups))
    names = ["P@1", *(f"R@{k}" for k in CUTOFFS), *(f"HR@{k}" for k in CUTOFFS), "mAP", "MRR"]
    out: dict[str, float | int] = {
        name: float(np.mean([m[name] for m in per_query])) if per_query else float("nan")
        for name in names
    }
    out["queries"] = len(per_query)
    out["skipped"] = skipped
    return out


def caption_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float | int]:
    """R@1, R@5, R@10 and mAP@10 of caption retrieval (Clotho, AudioCaps) as fractions in
    [0, 1], as the caption-retrieval papers report them, with `queries` and `skipped`.

    `scores` and `relevant` are (queries x candidates). For text -> audio a query is one
    caption and its one relevant candidate is its clip; for audio -> text a query is a clip
    and its relevant candidates are all of its captions. Per query:
    - R@k: 1 when some relevant candidate is among the top k, else 0 (for audio -> text the
      best-ranked of the clip's captions counts, as in the papers);
    - AP@10: (1 / rel) x the sum, over the ranks i <= 10 that hold a relevant candidate, of
      the precision at i (relevant in the top i / i), where rel counts all the query's
      relevant candidates: 1 / rank for one relevant candidate (0 beyond rank 10), and for a
      clip with 5 captions the sum divided by 5. mAP@10 is its mean.

    Ties: candidates with equal scores share a rank group, and both metrics take their exact
    expected value over a uniformly random order inside each group, as the other metrics of
    this module do."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape}: not one 2-d shape")
    names = [*(f"R@{k}" for k in CUTOFFS), f"mAP@{CAPTION_MAP_CUTOFF}"]
    per_query: list[list[float]] = []
    skipped = 0
    for q in range(len(scores)):
        groups = _rank_groups(scores[q], relevant[q])
        if groups is None:
            skipped += 1
            continue
        sizes, hits, total = groups
        before = np.cumsum(sizes) - sizes
        row = [_hit_rate(sizes, hits, before, k) for k in CUTOFFS]
        row.append(_average_precision_at(sizes, hits, total, CAPTION_MAP_CUTOFF))
        per_query.append(row)
    means = np.mean(per_query, axis=0) if per_query else np.full(len(names), np.nan)
    out: dict[str, float | int] = {name: float(v) for name, v in zip(names, means)}
    out["queries"] = len(per_query)
    out["skipped"] = skipped
    return out


def average_precisions(
    scores: np.ndarray, relevant: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """AP of each query (NaN where a query has no relevant candidate)."""
    out = np.full(len(scores), np.nan)
    for q in range(len(scores)):
        keep = slice(None) if exclude is None else ~np.asarray(exclude[q], dtype=bool)
        groups = _rank_groups(np.asarray(scores[q], float)[keep], np.asarray(relevant[q])[keep])
        if groups is not None:
            out[q] = _average_precision(*groups)
    return out


def zero_shot_accuracy(scores: np.ndarray, truth: np.ndarray) -> float:
    """Share of samples whose true class scores highest among the classes (samples x classes);
    a tie at the top counts 1/t when the true class is one of the t tied."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth)
    best = scores.max(axis=1, keepdims=True)
    tied = (scores == best).sum(axis=1)
    hit = scores[np.arange(len(scores)), truth] == best[:, 0]
    return float(np.mean(hit / tied)) if len(scores) else float("nan")


def interpolated_precision(
    scores: np.ndarray, relevant: np.ndarray, exclude: np.ndarray | None = None, points: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """(recall levels, mean interpolated precision): at each recall level the best precision at
    that recall or beyond, averaged over queries (the usual precision-recall curve of IR)."""
    levels = np.linspace(0, 1, points)
    curves = []
    for q in range(len(scores)):
        keep = slice(None) if exclude is None else ~np.asarray(exclude[q], dtype=bool)
        groups = _rank_groups(np.asarray(scores[q], float)[keep], np.asarray(relevant[q])[keep])
        if groups is None:
            continue
        sizes, hits, total = groups
        recall = np.cumsum(hits) / total
        precision = np.cumsum(hits) / np.cumsum(sizes)
        best_beyond = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, levels - 1e-12)  # first group reaching each level
        curves.append(np.where(at < len(recall), best_beyond[np.minimum(at, len(recall) - 1)], 0))
    return levels, (np.mean(curves, axis=0) if curves else np.full(points, np.nan))


def _rank_groups(scores: np.ndarray, relevant: np.ndarray):
    """(group sizes, relevant per group, total relevant) over the tie groups in score order,
    or None when nothing is relevant."""
    total = int(np.count_nonzero(relevant))
    if total == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    ordered, rel = scores[order], relevant[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(ordered)])
    return sizes, np.add.reduceat(rel, starts), total


def _query_metrics(sizes: np.ndarray, hits: np.ndarray, total: int) -> dict[str, float]:
    before = np.cumsum(sizes) - sizes  # candidates ranked strictly above each group
    out = {}
    for k in CUTOFFS:
        inside = np.clip((k - before) / sizes, 0, 1)  # share of each group within the top k
        expected = float((hits * inside).sum())
        out[f"R@{k}"] = expected / total
        if k == 1:
            out["P@1"] = expected
        out[f"HR@{k}"] = _hit_rate(sizes, hits, before, k)
    out["mAP"] = _average_precision(sizes, hits, total)
    out["MRR"] = _reciprocal_rank(sizes, hits, before)
    return out


def _hit_rate(sizes, hits, before, k: int) -> float:
    """Probability that some relevant candidate is in the top k."""
    first = int(np.flatnonzero(hits)[0])  # the first group holding a relevant candidate
    slots = k - before[first]
    t, r = int(sizes[first]), int(hits[first])
    if slots <= 0:
        return 0.0
    if slots >= t:
        return 1.0
    miss = np.prod((t - r - np.arange(slots)) / (t - np.arange(slots)))  # all slots irrelevant
    return float(1.0 - max(miss, 0.0))


def _reciprocal_rank(sizes, hits, before) -> float:
    """Expected 1 / rank of the first relevant candidate."""
    first = int(np.flatnonzero(hits)[0])
    t, r, b = int(sizes[first]), int(hits[first]), int(before[first])
    j = np.arange(1, t - r + 2)  # the first relevant's position inside its group
    # P(X = 1) = r / t; P(X = j + 1) = P(X = j) * (t - j - r + 1) / (t - j)
    steps = np.r_[r / t, (t - j[:-1] - r + 1) / (t - j[:-1])]
    return float((np.cumprod(steps) / (b + j)).sum())


def _average_precision_at(sizes, hits, total: int, k: int) -> float:
    """Expected AP@k over random orders inside the tie groups: (1 / total) x the sum over the
    ranks i <= k of E[relevant at i x relevant in the top i] / i, which is linear, so exact."""
    before = np.cumsum(sizes) - sizes
    hits_before = np.cumsum(hits) - hits
    out = 0.0
    for g in range(len(sizes)):
        b = int(before[g])
        if b >= k:
            break
        t, r, h = int(sizes[g]), int(hits[g]), int(hits_before[g])
        if r == 0:
            continue
        j = np.arange(1, min(t, k - b) + 1)  # positions inside the group, within the top k
        # position j is relevant with probability r / t; given that, each of the j - 1 places
        # before it holds one of the other r - 1 relevant candidates with (r - 1) / (t - 1)
        both = r * (r - 1) / (t * (t - 1)) if t > 1 else 0.0
        expected = r / t * (h + 1) + (j - 1) * both
        out += float((expected / (b + j)).sum())
    return out / total


def _average_precision(sizes, hits, total: int) -> float:
    """Sum over the score thresholds of (recall gained) x (precision at that threshold)."""
    precision = np.cumsum(hits) / np.cumsum(sizes)
    return float((hits / total * precision).sum())
