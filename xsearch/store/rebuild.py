"""Re-deriving FAISS indexes from the Parquet embeddings, the store's source of truth.

A rebuild streams the embeddings: it reads each modality's Parquet parts batch by batch and
never holds more than one batch, the training sample and the reference sample at a time
(the index itself aside: an exact index is its vectors; an `on_disk` IVF index keeps its
lists in a file). Two passes over the parts:
1. the training sample (types that need training): rows drawn uniformly, with a fixed seed,
   among the live items (those the items table holds) in storage order;
2. the additions, batch by batch, live items only; the reference sample (the bottom-k
   sketch of store/reference.py) is updated from each batch on the way.
The new generation is published atomically by `Writer.rebuild`, like any commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xsearch.store.segments import local_role, stored_batches
from xsearch.store.store import Store, Writer


@dataclass(frozen=True)
class RebuildOptions:
    factory: str = "Flat"  # a FAISS index-factory string
    train_sample: int | None = None  # vectors to train on; None: faiss_index.train_size's rule
    batch_size: int = 32_768  # vectors read at a time (128 MB of float32 at width 1024)
    on_disk: bool = False  # IVF lists in an .ivfdata file that readers map, not load
    seed: int = 0  # of the training sample
    on_batch: Callable[[int], None] | None = None  # called with each batch's row count (tests)


@dataclass
class ModalityReport:
    """What a rebuild did for one modality."""

    modality: str
    items: int = 0
    train_sample: int = 0
    sample_s: float = 0.0  # reading the training sample
    train_s: float = 0.0
    add_s: float = 0.0
    batches: int = 0
    max_batch_rows: int = 0
    files: dict[str, int] = field(default_factory=dict)  # role -> bytes, once published


def rebuild_indexes(directory: Path, factory: str = "Flat", **settings) -> Store:
    """Publish a generation whose FAISS files are built afresh with `factory` (`settings`:
    the other fields of RebuildOptions)."""
    return rebuild(directory, RebuildOptions(factory=factory, **settings))[0]


def rebuild(directory: Path, options: RebuildOptions) -> tuple[Store, list[ModalityReport]]:
    """`rebuild_indexes`, with a report per modality rebuilt."""
    manifest = Store.open(directory).manifest
    with Writer(directory, manifest.model if manifest else {}) as writer:
        store = writer.store
        _check_factory(store, options)  # a bad factory string fails here, before any work
        reports = {m: ModalityReport(m) for m in store.modalities}
        builds = {m: _build(store, m, options, reports[m]) for m in store.modalities}
        published = writer.rebuild({m: b for m, b in builds.items() if b is not None})
    for report in reports.values():
        for kind in ("faiss", "ivfdata"):
            sizes = [
                entry.bytes
                for role, entry in published.manifest.files.items()
                if local_role(role) == f"{kind}/{report.modality}" and role.startswith("seg/")
            ]
            if sizes and report.items:
                report.files[f"{kind}/{report.modality}"] = sum(sizes)
    return published, [r for r in reports.values() if r.items]


def _check_factory(store: Store, options: RebuildOptions) -> None:
    """A factory string that cannot index one of the index's widths (PQ64 at width 100,
    say) fails here, before any work."""
    from xsearch.indexes.faiss_index import check_on_disk, new_index

    for width in sorted(set(store.widths.values())):
        index = new_index(width, options.factory)
        if options.on_disk:
            check_on_disk(index, options.factory)


def _build(store: Store, modality: str, options: RebuildOptions, report: ModalityReport):
    """How `Writer.rebuild` builds the indexes of `modality` (store/draft.py's IndexBuild):
    one template trained on a sample of every segment's live vectors, then filled segment
    by segment; None when the modality has no items."""
    from xsearch.indexes import faiss_index
    from xsearch.store.draft import IndexBuild

    live = np.unique(store.item_ids(modality))
    if not len(live) or not store.embedding_roles(modality):
        return None
    dim = store.widths[modality]
    template = faiss_index.new_index(dim, options.factory)
    report.items = len(live)
    t0 = time.perf_counter()
    size = faiss_index.train_size(template, len(live), options.train_sample)
    if size:
        roles = store.embedding_roles(modality)
        sample = _training_sample(store, roles, live, size, options, report)
        report.sample_s = time.perf_counter() - t0
        faiss_index.train(template, sample)
        report.train_sample = len(sample)
        del sample
    report.train_s = time.perf_counter() - t0 - report.sample_s
    reference = [(np.empty(0, np.int64), np.empty((0, dim), np.float32))]

    def vectors(reader):
        t1 = time.perf_counter()
        seg_live = np.unique(reader.item_ids(modality))
        for ids, batch in _batches(
            store, reader.embedding_roles(modality), seg_live, options, report
        ):
            reference[0] = _sketch(reference[0], ids, batch)
            report.add_s += time.perf_counter() - t1
            yield ids, batch
            t1 = time.perf_counter()

    return IndexBuild(template, vectors, lambda: reference[0], on_disk=options.on_disk)


def _sketch(sample, ids: np.ndarray, vectors: np.ndarray):
    """The bottom-k sketch (store/reference.py) of the items seen so far, updated with a
    batch: only the batch's items that hash below the sketch's largest can enter it."""
    from xsearch.store.reference import REFERENCE_SIZE, bottom_k, id_hash

    sample_ids, sample_vectors = sample
    if len(sample_ids) >= REFERENCE_SIZE:
        enter = id_hash(ids) < id_hash(sample_ids).max()
        ids, vectors = ids[enter], vectors[enter]
    return bottom_k(np.concatenate([sample_ids, ids]), np.concatenate([sample_vectors, vectors]))


def _training_sample(
    store: Store,
    roles: list[str],
    live: np.ndarray,
    size: int,
    options: RebuildOptions,
    report: ModalityReport,
) -> np.ndarray:
    """`size` live vectors drawn uniformly (seeded) in one streaming pass: the rows whose
    position among the live rows, in storage order, was drawn."""
    rng = np.random.default_rng(options.seed)
    wanted = np.sort(rng.choice(len(live), size=size, replace=False))
    sample, taken, seen = None, 0, 0
    for _, vectors in _batches(store, roles, live, options, report):
        lo, hi = np.searchsorted(wanted, [seen, seen + len(vectors)])
        if sample is None:
            sample = np.empty((size, vectors.shape[1]), np.float32)
        sample[taken : taken + hi - lo] = vectors[wanted[lo:hi] - seen]
        taken, seen = taken + hi - lo, seen + len(vectors)
        if taken == size:
            break
    return sample[:taken] if sample is not None else np.empty((0, 0), np.float32)


def _batches(
    store: Store,
    roles: list[str],
    live: np.ndarray,
    options: RebuildOptions,
    report: ModalityReport,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`stored_batches`, counted in `report` (and told to `options.on_batch`)."""

    def counted(rows: int) -> None:
        report.batches += 1
        report.max_batch_rows = max(report.max_batch_rows, rows)
        if options.on_batch is not None:
            options.on_batch(rows)

    return stored_batches(store, roles, live, options.batch_size, counted)
