"""One query over several indexes, each built with its own model, answered in one ranking.

    hits = xsearch.api.search_indexes(["pictures", "sounds"], text="dog barking", target="all")
    for hit in hits:
        print(hit.rank, hit.index, hit.score, hit.path)

Each index embeds the query with its own model (an AudioCLIP index for pictures and a CLAP
index for sounds, say) and is searched on its own; the hits are merged by their calibrated
score, which means the same for every model and pairing (xsearch/search/calibrate.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from xsearch.errors import ParameterError, UsageError
from xsearch.search.hit import Hit
from xsearch.search.targets import ALL_TARGETS, targets_for

if TYPE_CHECKING:
    from xsearch.api.index import Index, Query
    from xsearch.store.store import Store

__all__ = ["MergedHits", "search_indexes"]


class MergedHits(list):
    """Hits of several indexes in one ranking; each hit's `index` names the index it came
    from. `generations`: the generation searched, per index searched (in the order given);
    `skipped`: why each index that could not answer the query was left out;
    `random_weights`: whether an index searched has random weights (its scores mean nothing)."""

    def __init__(
        self,
        hits: Sequence[Hit] = (),
        generations: Mapping[str, int] | None = None,
        skipped: Mapping[str, str] | None = None,
        random_weights: bool = False,
    ) -> None:
        super().__init__(hits)
        self.generations = dict(generations or {})
        self.skipped = dict(skipped or {})
        self.random_weights = random_weights


FILE_TARGETS = ("video", "all")  # targets whose results are files, with their moments


def search_indexes(
    indexes: Sequence[str | Index],
    *,
    text: Query = (),
    image: Query = (),
    audio: Query = (),
    video: Query = (),
    target: str = "audio",
    k: int = 10,
    where: str | None = None,
    exclude_self: bool = False,
    min_score: float | None = None,
    nprobe: int | None = None,
    ef: int | None = None,
    k_factor: float | None = None,
    per_file: int | None = None,
    by_file: bool = False,
    root: str | os.PathLike[str] | None = None,
    weights: Mapping[str, str] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    gpu: bool = False,
    fp16_index: bool = False,
) -> MergedHits:
    """The `k` best hits of `target` across `indexes` (names under `root`, or open `Index`
    objects, used as they are), each embedding the query with its own model; queries and
    options as `Index.search` (item ids, being per index, are not taken). Hits are merged by
    calibrated score; equal scores keep the order of `indexes`, then each index's ranks.

    An index whose model cannot embed the query's modalities, or that holds nothing of
    `target`, is skipped and the result says why (`skipped`); when no index can answer, a
    UsageError gives every reason in one line. A missing index, a bad `where` on any index
    and the other errors of `Index.search` are raised, before any model loads where
    `Index.search` raises them so. Each query file is decoded once per model input (sample
    rate, resampler), however many indexes use it. `weights`: a checkpoint per index name
    (the others find theirs as `open_index` does); `device`, `precision`, `gpu` and
    `fp16_index` apply to every index opened here."""
    from xsearch.api.index import _weighted
    from xsearch.media.query_files import QueryFiles
    from xsearch.search.engine import check_where

    if k < 1:
        raise ParameterError("k", "must be at least 1")
    if target not in ALL_TARGETS:
        known = ", ".join(ALL_TARGETS)
        raise ParameterError("target", f"unknown target {target!r}; use one of {known}")
    given_queries = {"text": text, "image": image, "audio": audio, "video": video}
    queries = {m: _weighted(q) for m, q in given_queries.items()}
    given = [m for m, q in queries.items() if q]
    if not given:
        raise UsageError("give a query: text, image, audio or video")
    opened = _open_all(indexes, root, weights or {}, device, precision, gpu, fp16_index)
    reasons = {name: _why_not(index, given, target) for name, index in opened.items()}
    skipped = {name: why for name, why in reasons.items() if why is not None}
    usable = {name: index for name, index in opened.items() if name not in skipped}
    if not usable:
        said = "; ".join(f"{name} {why}" for name, why in skipped.items())
        raise UsageError(f"no index can answer this query: {said}")
    if where is not None:
        for index in usable.values():  # every filter is judged before any model loads
            check_where(index.store, where)
    decoded = QueryFiles()
    found: list[tuple[float, int, int, Hit]] = []
    generations: dict[str, int] = {}
    for position, (name, index) in enumerate(opened.items()):
        if name not in usable:
            continue
        hits = index.search(
            **queries,
            target=target,
            k=k,
            where=where,
            exclude_self=exclude_self,
            min_score=min_score,
            nprobe=nprobe,
            ef=ef,
            k_factor=k_factor,
            per_file=per_file,
            by_file=by_file,
            decoded=decoded,
        )
        generations[name] = hits.generation
        found += [(-hit.score, position, hit.rank, replace(hit, index=name)) for hit in hits]
    as_files = target in FILE_TARGETS or by_file
    merged = _files_merged(found, k) if as_files else _items_merged(found, k)
    random = any(index.random_weights for index in usable.values())
    return MergedHits(merged, generations, skipped, random)


def _items_merged(found: list[tuple[float, int, int, Hit]], k: int) -> list[Hit]:
    """The `k` best hits by score; equal scores in index order, then each index's ranks."""
    found.sort(key=lambda entry: entry[:3])
    return [replace(hit, rank=rank) for rank, (*_, hit) in enumerate(found[:k], 1)]


def _files_merged(found: list[tuple[float, int, int, Hit]], k: int) -> list[Hit]:
    """The `k` best files by their best moment, each file's moments kept together in their
    order and sharing the file's rank (targets whose results are files)."""
    files: dict[tuple[int, int], list[tuple[float, int, int, Hit]]] = {}
    for entry in found:  # each index gives a file's moments together, best first
        files.setdefault((entry[1], entry[2]), []).append(entry)
    ranked = sorted(files.values(), key=lambda moments: moments[0][:3])[:k]
    return [
        replace(hit, rank=rank) for rank, moments in enumerate(ranked, 1) for *_, hit in moments
    ]


def _open_all(
    indexes: Sequence[str | Index],
    root: str | os.PathLike[str] | None,
    weights: Mapping[str, str],
    device: str,
    precision: str,
    gpu: bool,
    fp16_index: bool,
) -> dict[str, Index]:
    """Name -> opened index, in the order given; ParameterError for a name given twice or a
    checkpoint for an index not given."""
    from xsearch.api.index import open_index

    if isinstance(indexes, (str, os.PathLike)) or not indexes:
        raise ParameterError("index", "give a list of one or more index names")
    names = [i if isinstance(i, str) else i.name for i in indexes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ParameterError("index", f"{', '.join(twice)} given twice")
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ParameterError("weights", f"no index {', '.join(unknown)} among those searched")
    opened: dict[str, Index] = {}
    for name, given in zip(names, indexes):
        if not isinstance(given, str):
            opened[name] = given
            continue
        opened[name] = open_index(
            name,
            root,
            weights=weights.get(name),
            device=device,
            precision=precision,
            gpu=gpu,
            fp16_index=fp16_index,
        )
    return opened


def _why_not(index: Index, given: list[str], target: str) -> str | None:
    """Why `index` cannot answer a query of the modalities `given` for `target` (its model
    embeds neither them nor the target, or it holds no target items); None when it can."""
    if not index.exists:
        return "is empty (add files with ingest)"
    store = index.store
    have = index.modalities
    model = (store.manifest.model if store.manifest else {}).get("config", "?")
    for modality in given:
        if modality not in have and not (modality == "video" and {"image", "audio"} & set(have)):
            return f"cannot embed {modality} queries: its model ({model}) embeds {', '.join(have)}"
    if target not in targets_for(have):
        return f"has no target {target}: its model ({model}) embeds {', '.join(have)}"
    if not _holds(store, target):
        return f"holds no {target} items" if target != "all" else "holds no items"
    return None


def _holds(store: Store, target: str) -> bool:
    """Whether the store has items `target` can return: of that modality, a video's frame or
    sound for `video`, any for `all` (what the engine searches)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def any_of(column: str, values: list[str]) -> bool:
        table = store.assets if column == "kind" else store.items
        return bool(pc.any(pc.is_in(table.column(column), pa.array(values))).as_py())

    if target == "video":
        return any_of("kind", ["video"]) and any_of("modality", ["image", "audio"])
    return store.items.num_rows > 0 if target == "all" else any_of("modality", [target])
