"""Caption retrieval quality of an index (the Clotho / AudioCaps protocol), measured on the
vectors it serves.

The text items of the index are captions of their file (a caption dataset ingests each clip's
captions as text items tied to it). Two pairings:
- text -> audio: each caption is a query; the candidates are the clips with audio; the one
  relevant candidate is the caption's own clip;
- audio -> text: each clip with audio is a query; the candidates are all captions; the
  relevant ones are the clip's own captions.

A clip cut into several audio windows (ingest's windows, 10 s by default) scores a caption
with its best window: the score of caption c and clip a is the maximum over a's windows w of
the served score of (c, w), the way a search ranks a file by its best item. Scores come from
the served FAISS index (approximate when the index is; candidates it does not return rank
last, tied), or the exact inner product with `exact=True`. Metrics: `caption_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from xsearch.errors import ParameterError, UsageError
from xsearch.eval.metrics import caption_metrics, interpolated_precision
from xsearch.eval.retrieval import QUERY_CHUNK, PairResult, ServedScores, combine

CAPTION_PAIRS: tuple[tuple[str, str], ...] = (("text", "audio"), ("audio", "text"))


def caption_pairs(pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The pairings asked for, checked: caption retrieval has text:audio and audio:text only
    (None or empty: both)."""
    if not pairs:
        return list(CAPTION_PAIRS)
    for q, t in pairs:
        if (q, t) not in CAPTION_PAIRS:
            raise ParameterError(
                "pairs", f"caption retrieval pairs text:audio and audio:text, not {q}:{t}"
            )
    return list(pairs)


class CaptionEvaluation(ServedScores):
    """The captioned clips of one index generation, ready to score the caption pairings."""

    def __init__(self, index, exact: bool = False, **search_knobs) -> None:
        self.index = index
        self.store = index.store
        self.exact = exact
        self.knobs = search_knobs  # nprobe / ef / k_factor for approximate indexes
        items = self.store.items.select(["item_id", "asset_id"])
        self.item_asset = dict(
            zip(items.column("item_id").to_pylist(), items.column("asset_id").to_pylist())
        )
        if len(self.store.item_ids("text")) == 0:
            raise UsageError(f"index {self.store.dir.name} has no captions (text items)")

    def pairs(self, pairs: Iterable[tuple[str, str]], curves: bool = False) -> list[PairResult]:
        if len(self.store.item_ids("audio")) == 0:
            raise UsageError(f"index {self.store.dir.name} has no audio to pair its captions with")
        return [self.pair(query, result, curves) for query, result in pairs]

    def pair(self, query: str, result: str, curve: bool = False) -> PairResult:
        if (query, result) not in CAPTION_PAIRS:
            raise ParameterError("pairs", f"caption retrieval has no pairing {query}:{result}")
        text_ids, text_vectors = self.store.embeddings("text")
        audio_ids, audio_vectors = self.store.embeddings("audio")
        text_clips = self._assets(text_ids)
        clips, window_clip = np.unique(self._assets(audio_ids), return_inverse=True)
        by_clip = np.argsort(window_clip, kind="stable")  # windows grouped clip by clip
        starts = np.flatnonzero(np.r_[True, np.diff(window_clip[by_clip]) != 0])
        parts: list[dict[str, float | int]] = []
        curves: list[tuple[np.ndarray, int]] = []
        if query == "text":
            for start in range(0, len(text_ids), QUERY_CHUNK):
                chunk = slice(start, start + QUERY_CHUNK)
                windows = self._scores("audio", text_vectors[chunk], audio_ids, audio_vectors)
                windows = windows[:, by_clip]
                scores = np.maximum.reduceat(windows, starts, axis=1)  # best window per clip
                relevant = text_clips[chunk, None] == clips[None, :]
                parts.append(self._measure(scores, relevant, curve, curves))
            candidates = len(clips)
        else:
            ends = np.r_[starts[1:], len(by_clip)]
            per_chunk = max(1, QUERY_CHUNK * len(clips) // max(len(by_clip), 1))
            for first in range(0, len(clips), per_chunk):
                last = min(first + per_chunk, len(clips))
                rows = by_clip[starts[first] : ends[last - 1]]
                windows = self._scores("text", audio_vectors[rows], text_ids, text_vectors)
                scores = np.maximum.reduceat(windows, starts[first:last] - starts[first], axis=0)
                relevant = clips[first:last, None] == text_clips[None, :]
                parts.append(self._measure(scores, relevant, curve, curves))
            candidates = len(text_ids)
        return PairResult(query, result, combine(parts), candidates, _mean_curve(curves))

    def _assets(self, item_ids: np.ndarray) -> np.ndarray:
        return np.array([self.item_asset[int(i)] for i in item_ids], dtype=np.int64)

    @staticmethod
    def _measure(scores, relevant, curve: bool, curves: list) -> dict[str, float | int]:
        metrics = caption_metrics(scores, relevant)
        if curve:
            curves.append((interpolated_precision(scores, relevant)[1], metrics["queries"]))
        return metrics


def _mean_curve(curves: list) -> tuple[list[float], list[float]] | None:
    """The query-weighted mean precision-recall curve of the chunks, or None."""
    used = [(c, n) for c, n in curves if n]
    if not used:
        return None
    weights = np.array([n for _, n in used], dtype=np.float64)
    mean = np.average(np.stack([c for c, _ in used]), axis=0, weights=weights)
    return np.linspace(0, 1, len(mean)).tolist(), mean.tolist()
