"""Retrieval quality of an index, measured on the vectors it serves.

For each pairing query modality -> target modality (text, image, audio):
- text queries are the unique label sets of the index (the paper's protocol), embedded with the
  index's own model as the labels joined by ", ";
- image and audio queries are the labelled items of that modality, with their stored vectors;
- candidates are all items of the target modality; a candidate is relevant when its file's label
  set equals the query's (`relevance="same"`, the paper's protocol) or shares a label with it
  (`relevance="any"`);
- in same-modality retrieval a query never sees the items of its own file;
- candidates are ranked by the served FAISS index (approximate when the index is), those it
  does not return ranked last, tied; `exact=True` ranks by the exact inner product instead.
  An index on the GPU returns at most `GPU_MAX_K` per query: an exact (flat) one ranks the
  rest by their inner product, as it would on the CPU; an IVF one ranks them last, tied.

`aggregate` scores files instead of items: a file with several items of a modality (a video's
frames, a long recording's audio windows) is one query and one candidate, its items taken
together, on both sides:
- "central": the file's item whose span holds the middle of the file (the paper's
  single-frame / single-clip protocol);
- "mean": the mean of the file's item vectors, normalised; ranked by the exact inner product,
  since the served index holds items, not files;
- "max": a candidate file scores its best item; a query file with several items the best over
  its items x the candidate's items.
Text queries stay label sets and text candidates stay items; in same-modality retrieval a query
file never sees itself. Without `aggregate` every item is its own query and candidate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from xsearch.errors import ParameterError, UsageError
from xsearch.eval.metrics import interpolated_precision, retrieval_metrics, zero_shot_accuracy
from xsearch.indexes import placement
from xsearch.search.engine import SearchOptions, search_parameters
from xsearch.search.spaces import rows_for
from xsearch.store.tables import MODALITIES

RELEVANCE = ("same", "any")
AGGREGATES = ("central", "mean", "max")  # how a file's items score together
QUERY_CHUNK = 256  # queries scored at a time: bounds the score matrix's memory


@dataclass
class PairResult:
    query: str
    result: str
    metrics: dict[str, float | int]
    candidates: int
    curve: tuple[list[float], list[float]] | None = field(default=None, repr=False)
    aggregate: str | None = None  # files scored by their items together (AGGREGATES), or items

    def as_dict(self) -> dict:
        out = {"query": self.query, "result": self.result, "candidates": self.candidates}
        if self.aggregate is not None:
            out["aggregate"] = self.aggregate
        out |= {k: None if v != v else v for k, v in self.metrics.items()}  # NaN -> null
        if self.curve is not None:
            out["pr_curve"] = {"recall": self.curve[0], "precision": self.curve[1]}
        return out


def check_aggregate(aggregate: str | None) -> None:
    """ParameterError, in one line, for an aggregate that is not one of AGGREGATES."""
    if aggregate is not None and aggregate not in AGGREGATES:
        raise ParameterError(
            "aggregate", f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}"
        )


def central_item(spans: Sequence[tuple[float | None, float | None]], duration: float | None) -> int:
    """Which of a file's items (their (start, end) spans in seconds, in order) holds the middle
    of the file, duration / 2: the earlier one when two hold it (a shared boundary), the nearest
    one when none does (a gap); without a duration, the middle of the items' spans. A file of one
    item, or of items without spans, gives its first."""
    starts = [0.0 if s is None else float(s) for s, _ in spans]
    ends = [b if e is None else float(e) for b, (_, e) in zip(starts, spans)]
    middle = duration / 2 if duration else (min(starts) + max(ends)) / 2
    distance = [max(b - middle, middle - e, 0.0) for b, e in zip(starts, ends)]
    return min(range(len(spans)), key=lambda n: (distance[n], starts[n], n))


@dataclass
class Files:
    """The items of one modality grouped by file. Items stay in id order, the order in which
    `served_scores` answers; `item_file` says whose each is."""

    ids: np.ndarray  # item ids, ascending
    vectors: np.ndarray  # one row per item
    item_file: np.ndarray  # each item's file: a row of `assets`
    assets: np.ndarray  # each file's asset id
    labels: list[frozenset]  # each file's label set
    central: np.ndarray  # each file's central item: a row of `ids`

    @classmethod
    def singletons(cls, ids, vectors, assets, labels) -> Files:
        """Every item a file of its own (text candidates, text queries)."""
        rows = np.arange(len(ids))
        return cls(np.asarray(ids), vectors, rows, np.asarray(assets), list(labels), rows)

    def __len__(self) -> int:
        return len(self.assets)

    def rows_of(self, first: int, stop: int) -> np.ndarray:
        """The item rows of files first..stop-1, file by file."""
        order, starts = self._grouping
        return order[starts[first] : starts[stop]]

    def means(self) -> np.ndarray:
        """Each file's items' mean vector, normalised."""
        if not len(self):
            return np.empty((0, self.vectors.shape[1]), np.float32)
        order, starts = self._grouping
        sums = np.add.reduceat(self.vectors[order].astype(np.float64), starts[:-1], axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def best(self, scores: np.ndarray) -> np.ndarray:
        """(rows x items) scores -> (rows x files): each file's best item."""
        order, starts = self._grouping
        if not len(self):
            return np.empty((len(scores), 0))
        return np.maximum.reduceat(scores[:, order], starts[:-1], axis=1)

    @cached_property
    def _grouping(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows sorted by file, where each file's rows start, and the end)."""
        order = np.argsort(self.item_file, kind="stable")
        starts = np.searchsorted(self.item_file[order], np.arange(len(self) + 1))
        return order, starts


def parse_pairs(
    spec: str | Iterable[tuple[str, str] | str] | None, modalities: Sequence[str] = MODALITIES
) -> list[tuple[str, str]]:
    """'text:audio,audio:image' (or [("text", "audio"), ("audio", "image")]) -> a list of
    (query, result) pairings; None or empty = every pairing of `modalities`. A pairing of a
    modality outside `modalities` is a ParameterError naming it."""
    if not spec:
        return [(q, t) for q in modalities for t in modalities]
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    pairs = []
    for part in parts:
        if isinstance(part, str):
            q, _, t = part.strip().partition(":")
        elif isinstance(part, (tuple, list)) and len(part) == 2:
            q, t = part
        else:
            raise ParameterError("pairs", f"bad pairing {part!r}: give (query, result) pairs")
        shown = f"{q}:{t}"
        if q not in MODALITIES or t not in MODALITIES:
            raise ParameterError(
                "pairs",
                f"bad pairing {shown!r}: use QUERY:RESULT with {', '.join(modalities)}",
            )
        lacking = [m for m in (q, t) if m not in modalities]
        if lacking:
            raise ParameterError(
                "pairs",
                f"pairing {shown!r}: the index has no {lacking[0]} "
                f"(it has {', '.join(modalities)})",
            )
        pairs.append((q, t))
    return pairs


class ServedScores:
    """Scoring as the index serves: what both evaluations (labels, captions) share."""

    index: Any
    store: Any
    exact: bool
    knobs: dict

    def _scores(self, modality, queries, cand_ids, cand_vectors) -> np.ndarray:
        spec = self.index.spec
        return served_scores(
            self.store, modality, queries, cand_ids, cand_vectors, self.exact, self.knobs, spec
        )


class Evaluation(ServedScores):
    """The labelled items of one index generation, ready to score pairings."""

    def __init__(
        self,
        index,
        relevance: str = "same",
        exact: bool = False,
        aggregate: str | None = None,
        **search_knobs,
    ):
        if relevance not in RELEVANCE:
            raise ParameterError(
                "relevance", f"unknown relevance {relevance!r}; use one of {', '.join(RELEVANCE)}"
            )
        check_aggregate(aggregate)
        self.index = index
        self.store = index.store
        self.relevance = relevance
        self.exact = exact
        self.aggregate = aggregate  # None: every item is a query and a candidate of its own
        self.knobs = search_knobs  # nprobe / ef for approximate indexes
        assets = self.store.assets.to_pylist()
        self.asset_labels = {a["asset_id"]: frozenset(a["labels"] or ()) for a in assets}
        self.asset_duration = {a["asset_id"]: a["duration"] for a in assets}
        items = self.store.items.to_pylist()
        self.item_asset = {i["item_id"]: i["asset_id"] for i in items}
        self.item_span = {i["item_id"]: (i["start"], i["end"]) for i in items}
        if not any(self.asset_labels.values()):
            raise UsageError(f"index {self.store.dir.name} has no labels to evaluate against")

    def pairs(self, pairs: Iterable[tuple[str, str]], curves: bool = False) -> list[PairResult]:
        results = []
        for query, result in pairs:
            if self._count(result) == 0 or (query != "text" and self._count(query) == 0):
                continue  # a modality the index does not have
            results.append(self.pair(query, result, curves))
        if not results:
            raise UsageError("none of the pairings has items on both sides in this index")
        return results

    def pair(self, query: str, result: str, curve: bool = False) -> PairResult:
        if self.aggregate is not None:
            return self._file_pair(query, result, curve)
        cand_ids, cand_vectors = self.store.embeddings(result)
        cand_labels = [self.asset_labels[self.item_asset[int(i)]] for i in cand_ids]
        cand_assets = np.array([self.item_asset[int(i)] for i in cand_ids])
        q_labels, q_vectors, q_assets = self._queries(query)

        def score(chunk: slice) -> np.ndarray:
            return self._scores(result, q_vectors[chunk], cand_ids, cand_vectors)

        same = query == result
        return self._measure(
            (query, result), (q_labels, q_assets), (cand_labels, cand_assets), score, same, curve
        )

    def _file_pair(self, query: str, result: str, curve: bool) -> PairResult:
        """The pairing with files as queries and candidates, scored by `self.aggregate`."""
        cands = self._files(result)
        if query == "text":
            sets, vectors, assets = self._queries(query)
            queries = Files.singletons(np.arange(len(sets)), vectors, assets, sets)
        else:
            queries = self._files(query, labelled=True)
        score = self._file_scorer(result, queries, cands)
        found = self._measure(
            (query, result),
            (queries.labels, queries.assets),
            (cands.labels, cands.assets),
            score,
            query == result,
            curve,
        )
        found.aggregate = self.aggregate
        return found

    def _measure(self, names, queries, cands, score, same: bool, curve: bool) -> PairResult:
        """Metrics of queries (label sets, asset ids) against candidates (label sets, asset
        ids), scored `QUERY_CHUNK` queries at a time by `score(chunk)`; with `same` (one
        modality on both sides) a query never sees its own file."""
        q_labels, q_assets = queries
        cand_labels, cand_assets = cands
        parts, curves = [], []
        for start in range(0, len(q_labels), QUERY_CHUNK):
            chunk = slice(start, start + QUERY_CHUNK)
            scores = score(chunk)
            relevant = self._relevant(q_labels[chunk], cand_labels)
            exclude = None
            if same:  # a query never sees its own file
                exclude = q_assets[chunk, None] == cand_assets[None, :]
            parts.append(retrieval_metrics(scores, relevant, exclude))
            if curve:
                curves.append((interpolated_precision(scores, relevant, exclude)[1], parts[-1]))
        metrics = combine(parts)
        pr = None
        used = [(c, p["queries"]) for c, p in curves if p["queries"]]
        if used:  # the query-weighted mean curve
            weights = np.array([n for _, n in used], dtype=np.float64)
            mean = np.average(np.stack([c for c, _ in used]), axis=0, weights=weights)
            pr = (np.linspace(0, 1, len(mean)).tolist(), mean.tolist())
        return PairResult(names[0], names[1], metrics, len(cand_labels), pr)

    def _file_scorer(self, result: str, queries: Files, cands: Files):
        """score(chunk of query files) -> (files x candidate files), by `self.aggregate`."""
        if self.aggregate == "mean":  # files are not in the served index: exact
            q_means, c_means = queries.means(), cands.means()
            return lambda chunk: q_means[chunk] @ c_means.T
        if self.aggregate == "central":
            q_central = queries.vectors[queries.central]

            def central(chunk: slice) -> np.ndarray:
                scores = self._scores(result, q_central[chunk], cands.ids, cands.vectors)
                return scores[:, cands.central]

            return central
        return lambda chunk: self._best_pairs(result, queries, cands, chunk)

    def _best_pairs(self, result: str, queries: Files, cands: Files, chunk: slice) -> np.ndarray:
        """(query files x candidate files): the best score over their items' pairs, the query
        files' items scored `QUERY_CHUNK` at a time."""
        first, stop, _ = chunk.indices(len(queries))
        out = np.full((max(stop - first, 0), len(cands)), -np.inf)
        rows = queries.rows_of(first, stop)  # their items, file by file
        owner = queries.item_file[rows] - first
        for start in range(0, len(rows), QUERY_CHUNK):
            block = slice(start, start + QUERY_CHUNK)
            scores = self._scores(result, queries.vectors[rows[block]], cands.ids, cands.vectors)
            best = cands.best(scores)  # (items x candidate files)
            files, starts = np.unique(owner[block], return_index=True)
            out[files] = np.maximum(out[files], np.maximum.reduceat(best, starts, axis=0))
        return out

    def _files(self, modality: str, labelled: bool = False) -> Files:
        """The items of `modality` grouped by file (only labelled files with `labelled`);
        text items stay one candidate each."""
        ids, vectors = self.store.embeddings(modality)
        item_assets = np.array([self.item_asset[int(i)] for i in ids], dtype=np.int64)
        if labelled:
            keep = np.array([bool(self.asset_labels[a]) for a in item_assets], dtype=bool)
            ids, vectors, item_assets = ids[keep], vectors[keep], item_assets[keep]
        if modality == "text":
            labels = [self.asset_labels[a] for a in item_assets]
            return Files.singletons(ids, vectors, item_assets, labels)
        assets, item_file = np.unique(item_assets, return_inverse=True)
        central = self._central_rows(ids, item_file.reshape(-1), assets)
        return Files(
            ids, vectors, item_file.reshape(-1), assets,
            [self.asset_labels[int(a)] for a in assets], central,
        )  # fmt: skip

    def _central_rows(self, ids: np.ndarray, item_file: np.ndarray, assets: np.ndarray):
        """The row of each file's central item."""
        rows_of: list[list[int]] = [[] for _ in assets]
        for row, f in enumerate(item_file):
            rows_of[f].append(row)
        out = np.empty(len(assets), dtype=np.int64)
        for f, rows in enumerate(rows_of):
            spans = [self.item_span[int(ids[r])] for r in rows]
            out[f] = rows[central_item(spans, self.asset_duration.get(int(assets[f])))]
        return out

    def zero_shot(
        self, modality: str, assets: set[int] | None = None, prompt: str | None = None
    ) -> dict[str, float | int]:
        """Accuracy of classifying single-label items of `modality` by the nearest class-name
        text (classes: every single label in the index); multi-label items are skipped.
        `prompt`: a template whose `{}` the class name replaces ("This is a sound of {}.");
        default the bare class name."""
        classes = sorted({next(iter(s)) for s in self.asset_labels.values() if len(s) == 1})
        if not classes:
            raise UsageError("zero-shot accuracy needs items with exactly one label")
        ids, vectors = self.store.embeddings(modality)
        labels = [self.asset_labels[self.item_asset[int(i)]] for i in ids]
        keep = [
            n
            for n, (i, s) in enumerate(zip(ids, labels))
            if len(s) == 1 and (assets is None or self.item_asset[int(i)] in assets)
        ]
        if not keep:
            raise UsageError(f"no single-label {modality} items to classify")
        texts = self.index.embed_queries(
            text=[prompt.replace("{}", c) for c in classes] if prompt else classes
        )
        scores = vectors[keep] @ texts.T
        truth = np.array([classes.index(next(iter(labels[n]))) for n in keep])
        return {
            "accuracy": zero_shot_accuracy(scores, truth),
            "items": len(keep),
            "classes": len(classes),
            "skipped": len(ids) - len(keep),
        }

    def _count(self, modality: str) -> int:
        return len(self.store.item_ids(modality))

    def _queries(self, modality: str):
        """(label sets, vectors, asset ids) of the queries of `modality`."""
        if modality == "text":
            sets = sorted({s for s in self.asset_labels.values() if s}, key=sorted)
            vectors = self.index.embed_queries(text=[", ".join(sorted(s)) for s in sets])
            return sets, vectors, np.full(len(sets), -1)
        ids, vectors = self.store.embeddings(modality)
        assets = np.array([self.item_asset[int(i)] for i in ids])
        labels = [self.asset_labels[a] for a in assets]
        keep = np.array([bool(s) for s in labels], dtype=bool)
        return [s for s, k in zip(labels, keep) if k], vectors[keep], assets[keep]

    def _relevant(self, queries: list[frozenset], candidates: list[frozenset]) -> np.ndarray:
        """(queries x candidates) relevance: the same label set, or any shared label."""
        if self.relevance == "same":
            ids: dict[frozenset, int] = {}
            q = np.array([ids.setdefault(s, len(ids)) for s in queries])
            c = np.array([ids.setdefault(s, len(ids)) for s in candidates])
            return q[:, None] == c[None, :]
        vocab = {label: n for n, label in enumerate(sorted(set().union(*queries, *candidates)))}
        return (_multi_hot(queries, vocab) @ _multi_hot(candidates, vocab).T) > 0


def served_scores(
    store,
    modality: str,
    queries,
    cand_ids,
    cand_vectors,
    exact: bool = False,
    knobs=None,
    spec=None,
) -> np.ndarray:
    """Scores of the queries against every candidate of `modality` (ids sorted, as
    `Store.embeddings` gives them): exact, or through the served index (candidates it does
    not return get -inf). `knobs`: nprobe / ef / k_factor for approximate indexes. `spec`:
    the model's, whose spaces say where the queries meet `modality` (search/spaces.py)."""
    knobs = knobs or {}
    if spec is not None:
        queries = rows_for(spec, queries, modality)
    if exact:
        return queries @ cand_vectors.T
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out = np.full((len(queries), len(cand_ids)), -np.inf)
    for reader, index in store.indexes(modality):
        held = np.isin(cand_ids, reader.item_ids(modality))
        _served_segment(index, queries, cand_ids, cand_vectors, held, knobs, out)
    return out


def _served_segment(index, queries, cand_ids, cand_vectors, held, knobs, out) -> None:
    """Fill `out` with what one segment's index scores (its deleted items are no candidates)."""
    n = min(len(cand_ids), index.ntotal)
    if placement.is_gpu(index):
        # GPU FAISS returns at most GPU_MAX_K per query; an exact (flat) index ranks the
        # rest by the inner product it would have given them, other types leave them last
        params = placement.parameters(index, knobs.get("nprobe"))
        k = min(n, placement.GPU_MAX_K)
        found_scores, found_ids = index.search(queries, k, params=params)
        if k < n and placement.is_gpu_flat(index):
            out[:, held] = queries @ cand_vectors[held].T
    else:
        params = search_parameters(index, None, SearchOptions(**knobs))
        found_scores, found_ids = index.search(queries, n, params=params)
    column = np.searchsorted(cand_ids, found_ids).clip(max=max(len(cand_ids) - 1, 0))
    rows = np.repeat(np.arange(len(queries)), found_ids.shape[1])
    valid = ((found_ids >= 0) & (cand_ids[column] == found_ids)).reshape(-1)
    out[rows[valid], column.reshape(-1)[valid]] = found_scores.reshape(-1)[valid]


def combine(parts: list[dict]) -> dict[str, float | int]:
    """Query-weighted means of per-chunk metrics."""
    used = sum(p["queries"] for p in parts)
    skipped = sum(p["skipped"] for p in parts)
    names = [k for k in parts[0] if k not in ("queries", "skipped")] if parts else []
    out: dict[str, float | int] = {
        k: (
            sum(p[k] * p["queries"] for p in parts if p["queries"]) / used if used else float("nan")
        )
        for k in names
    }
    out["queries"], out["skipped"] = used, skipped
    return out


def _multi_hot(sets: list[frozenset], vocab: dict[str, int]) -> np.ndarray:
    out = np.zeros((len(sets), len(vocab)), dtype=np.float32)
    for row, labels in enumerate(sets):
        out[row, [vocab[label] for label in labels]] = 1
    return out
