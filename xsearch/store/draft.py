"""The next generation while a writer builds it: the files it writes (all new, named after it)
and the segment list it will publish.

Three kinds of generation are drafted here, each published by `Writer._publish`:
- a commit: one new segment with what it adds, and new deletion markers for the older
  segments it removes rows of (`delete`, `add_segment`);
- a merge: a run of adjacent segments replaced by one holding their live rows, in the same
  order, so that searches rank ties as before (`merge`);
- a rebuild: each segment's FAISS index of a modality built afresh from one trained template,
  which later segments reuse (`rebuild_indexes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xsearch.store import tables
from xsearch.store.fsutil import crashpoint
from xsearch.store.manifest import Segment
from xsearch.store.names import generation_file
from xsearch.store.reference import bottom_k, updated_sample
from xsearch.store.segments import SegmentReader, deleted_table, segment_role

Vectors = tuple[np.ndarray, np.ndarray]  # (ids, vectors)


@dataclass
class IndexBuild:
    """How `Writer.rebuild` builds a modality's indexes: `template`, a trained and empty
    index that every segment's index starts from (and later segments reuse); `vectors`, the
    live (ids, vectors) of a segment in storage order, in batches; `reference`, called
    after every segment was built, the new reference sample."""

    template: object
    vectors: Callable[[SegmentReader], Iterable[Vectors]]
    reference: Callable[[], Vectors]
    on_disk: bool = False

    @classmethod
    def exact(cls, ids: np.ndarray, vectors: np.ndarray, factory: str = "Flat") -> IndexBuild:
        """From every live vector at once (small indexes, tests): trained on all of them."""
        from xsearch.indexes.faiss_index import build

        template = build(np.empty(0, np.int64), vectors, factory)

        def of_segment(reader: SegmentReader) -> Iterable[Vectors]:
            keep = np.isin(ids, reader.items.column("item_id").to_numpy())
            yield ids[keep], vectors[keep]

        return cls(template, of_segment, lambda: bottom_k(ids, vectors))


@dataclass(frozen=True)
class MergePolicy:
    """Tiered merging (Lucene's idea): segments are sized in tiers of `factor` x rows; a run
    of `factor` adjacent segments of one tier merges into one of the next tier, so each row
    is rewritten about log_factor(N / commit size) times and a tier holds at most `factor` - 1
    segments (22 in all at 1M items in commits of 2,000, 31 at 10M); past `max_segments`, a
    safety net, the adjacent run of `factor` with the fewest rows merges (sooner, it would
    merge across tiers and rewrite rows more often: half again at 1M with 20); a segment
    with more than `max_deleted` of its rows deleted is rewritten without them."""

    factor: int = 10
    max_segments: int = 40
    floor: int = 1_000  # rows: smaller segments all count as this tier
    max_deleted: float = 0.5

    def tier(self, segment: Segment) -> int:
        size = max(segment.rows, segment.assets, self.floor)
        return int(math.log(size, self.factor) + 1e-9)

    def pick(self, segments: Iterable[Segment]) -> tuple[int, int] | None:
        """The run [start, end) of segments to merge next, or None."""
        segments = list(segments)
        if any(s.rows < 0 for s in segments):
            return None  # a format-1 segment: counted (by the first commit) before merged
        n = len(segments)
        tiers = [self.tier(s) for s in segments]
        end = n
        while end > 0:
            start = end - 1
            while start > 0 and tiers[start - 1] == tiers[end - 1]:
                start -= 1
            if end - start >= self.factor:
                return end - self.factor, end
            end = start
        if n > self.max_segments:
            sums = [sum(s.rows for s in segments[i : i + self.factor]) for i in range(n)]
            start = int(np.argmin(sums[: n - self.factor + 1]))
            return start, start + self.factor
        for i, s in enumerate(segments):
            if s.rows and s.deleted > self.max_deleted * s.rows:
                return i, i + 1
        return None


class FullMerge(MergePolicy):
    """Everything into one segment without deleted rows (`xsearch index compact --full`)."""

    def pick(self, segments: Iterable[Segment]) -> tuple[int, int] | None:
        segments = list(segments)
        if any(s.rows < 0 for s in segments):
            return None
        if len(segments) > 1 or (segments and segments[0].deleted):
            return 0, len(segments)
        return None


class Draft:
    """Generation `generation` of `writer`'s index, being written."""

    def __init__(self, writer, generation: int) -> None:
        self.writer = writer
        self.old = writer.store
        self.generation = generation
        manifest = self.old.manifest
        self.files = dict(manifest.files) if manifest else {}
        self.written: dict[str, Path] = {}
        self.segments = [self._counted(r) for r in self.old.segments]

    def _counted(self, reader: SegmentReader) -> Segment:
        """The segment with its counts (a format-1 segment has none until its first commit)."""
        segment = reader.segment
        if segment.rows >= 0:
            return segment
        live = {m: reader.live_count(m) for m in tables.MODALITIES}
        return replace(
            segment,
            rows=reader.all_items.num_rows,
            live={m: n for m, n in live.items() if n},
            assets=reader.assets.num_rows,
        )

    # --- files --------------------------------------------------------------------------

    def path(self, stem: str, ext: str) -> Path:
        return self.old.dir / "data" / generation_file(stem, self.generation, ext)

    def write_table(self, role: str, stem: str, table: pa.Table) -> None:
        self.written[role] = self.path(stem, "parquet")
        tables.write_parquet(table, self.written[role])
        crashpoint(f"write-{stem.split('-s')[0]}")

    def _drop_segment_files(self, segment_id: int) -> None:
        prefix = segment_role(segment_id, "")
        for role in [r for r in self.files if r.startswith(prefix)]:
            del self.files[role]

    # --- a commit -----------------------------------------------------------------------

    def delete(
        self, removed_assets: set[int], renamed: dict[int, str]
    ) -> tuple[pa.Table, pa.Table]:
        """Mark deleted the assets `removed_assets` with their items, and the asset rows of
        the files `renamed` (which move to the new segment under their new path). Returns
        (the removed items, the moved asset rows)."""
        removed_items = [tables.ITEMS.empty_table()]
        moved = [tables.ASSETS.empty_table()]
        touched = pa.array(sorted({*removed_assets, *renamed}), pa.int64())
        gone = pa.array(sorted(removed_assets), pa.int64())
        if not len(touched):
            return removed_items[0], moved[0]
        for reader in self.old.segments:
            assets = reader.assets.filter(pc.is_in(reader.assets.column("asset_id"), touched))
            items = reader.items.filter(pc.is_in(reader.items.column("asset_id"), gone))
            if not assets.num_rows and not items.num_rows:
                continue
            removed_items.append(items)
            rows = [r for r in assets.to_pylist() if r["asset_id"] in renamed]
            for row in rows:
                row["path"] = renamed[row["asset_id"]]
            moved.append(pa.Table.from_pylist(rows, schema=tables.ASSETS))
            self._mark_deleted(reader, items, assets)
        return pa.concat_tables(removed_items), pa.concat_tables(moved)

    def _mark_deleted(self, reader: SegmentReader, items: pa.Table, assets: pa.Table) -> None:
        at = next(i for i, s in enumerate(self.segments) if s.id == reader.id)
        segment = self.segments[at]
        live = dict(segment.live)
        for modality in tables.MODALITIES:
            n = int(pc.sum(pc.equal(items.column("modality"), modality)).as_py() or 0)
            if n:
                live[modality] = live.get(modality, 0) - n
        segment = replace(
            segment,
            live={m: n for m, n in live.items() if n},
            assets=segment.assets - assets.num_rows,
        )
        if not segment.live_items and not segment.assets:  # nothing left: the segment goes
            del self.segments[at]
            self._drop_segment_files(reader.id)
            return
        self.segments[at] = segment
        deleted = deleted_table(
            [*reader.deleted_items, *items.column("item_id").to_pylist()],
            [*reader.deleted_assets, *assets.column("asset_id").to_pylist()],
        )
        self.write_table(reader.role("deleted"), f"deleted-s{reader.id}", deleted)

    def add_segment(self, assets: pa.Table, items: pa.Table, vectors: dict[str, Vectors]) -> None:
        """A new segment (id: this generation) holding `assets`, `items` and their vectors
        (modality -> (ids, vectors), in the order they are to be searched)."""
        if not assets.num_rows and not items.num_rows:
            return
        sid = self.generation
        if assets.num_rows:
            self.write_table(segment_role(sid, "assets"), "assets", assets)
        if items.num_rows:
            self.write_table(segment_role(sid, "items"), "items", items)
        for modality, (ids, vecs) in vectors.items():
            self._write_vectors(sid, modality, ids, vecs)
        live = {}
        for modality in tables.MODALITIES:
            n = int(pc.sum(pc.equal(items.column("modality"), modality)).as_py() or 0)
            if n:
                live[modality] = n
        self.segments.append(Segment(sid, rows=items.num_rows, live=live, assets=assets.num_rows))

    def write_reference(self, modality: str, sample: Vectors) -> None:
        role = f"reference/{modality}"
        ids, vectors = sample
        if not len(ids):
            self.files.pop(role, None)
            return
        self.written[role] = self.path(f"ref-{modality}", "parquet")
        tables.write_parquet(tables.embeddings_table(ids, vectors), self.written[role])
        crashpoint(f"write-reference-{modality}")

    # --- indexes ------------------------------------------------------------------------

    def _template(self, modality: str):
        """A copy of the index's trained template of `modality`, or None (exact indexes)."""
        import faiss

        from xsearch.indexes.faiss_index import write

        template = self.old.read_faiss(f"trained/{modality}")
        old = self.old.manifest
        if template is None and old is not None and old.format == 1 and old.segments:
            template = self._template_of_format_1(modality)
            if template is not None:  # kept from now on, like a rebuild's
                self.written[f"trained/{modality}"] = self.path(f"trained-{modality}", "index")
                write(template, self.written[f"trained/{modality}"])
        if template is None:
            return None
        return faiss.deserialize_index(faiss.serialize_index(template))

    def _template_of_format_1(self, modality: str):
        """The template of an index written before templates were kept (format 1): its
        approximate index emptied (an exact one needs none). In format 2 an index without a
        template is exact."""
        import faiss

        from xsearch.indexes.faiss_index import empty_like, inner_of

        for reader in self.old.segments:
            index = reader.load_faiss(modality)
            if index is not None:
                inner = inner_of(index)
                if isinstance(inner, faiss.IndexFlat):
                    return None
                return empty_like(index)
        return None

    def _on_disk(self, modality: str) -> bool:
        return any(r.endswith(f"/ivfdata/{modality}") for r in self.files)

    def _write_vectors(self, sid: int, modality: str, ids: np.ndarray, vectors: np.ndarray):
        """Segment `sid`'s embeddings of `modality` and its FAISS index."""
        role = segment_role(sid, f"embeddings/{modality}")
        self.written[role] = self.path(f"emb-{modality}", "parquet")
        tables.write_parquet(tables.embeddings_table(ids, vectors), self.written[role])
        crashpoint(f"write-embeddings-{modality}")
        self._build_index(sid, modality, [(ids, vectors)])

    def _build_index(
        self, sid: int, modality: str, batches: Iterable[Vectors], total: int | None = None
    ) -> None:
        """Segment `sid`'s FAISS index of `modality` from `batches` of (ids, vectors) in
        storage order, one batch in memory at a time (besides the index): the trained
        template filled, its lists on disk when the index keeps them there, or an exact
        index (`total` vectors: gathered first, as an exact index grown batch by batch
        copies itself at each growth, which makes a merge three times slower)."""
        from xsearch.indexes import faiss_index

        lists = self._index_path(sid, modality, "ivfdata")
        on_disk = self._on_disk(modality)
        if total and self._template(modality) is None:
            batches = [_gathered(batches, total)]
        index = None
        for ids, vectors in batches:
            if index is None:
                index = self._template(modality)
                if index is None:
                    index, on_disk = faiss_index.new_index(vectors.shape[1]), False
                elif on_disk:
                    faiss_index.start_on_disk(index, lists)
            faiss_index.add(index, ids, vectors)
        if index is None:  # no live vectors of `modality`
            return
        if on_disk:
            faiss_index.finish_on_disk(index, lists)
        self._write_index(sid, modality, index)
        crashpoint(f"write-faiss-{modality}")

    def _index_path(self, sid: int, modality: str, kind: str) -> Path:
        stem = f"faiss-{modality}" if sid == self.generation else f"faiss-{modality}-s{sid}"
        return self.path(stem, kind)

    def _write_index(self, sid: int, modality: str, index) -> None:
        from xsearch.indexes.faiss_index import ivfdata_file, write

        role = segment_role(sid, f"faiss/{modality}")
        self.written[role] = self._index_path(sid, modality, "index")
        write(index, self.written[role])
        lists = ivfdata_file(index)
        lists_role = segment_role(sid, f"ivfdata/{modality}")
        if lists is not None:
            self.written[lists_role] = lists
        else:
            self.files.pop(lists_role, None)

    # --- a rebuild ----------------------------------------------------------------------

    def rebuild_indexes(self, modality: str, build: IndexBuild) -> None:
        """Each segment's index of `modality` built from `build`'s template, and the template
        kept for the segments to come."""
        import faiss

        from xsearch.indexes import faiss_index

        for reader in self.old.segments:
            index, lists = None, self._index_path(reader.id, modality, "ivfdata")
            for ids, vectors in build.vectors(reader):  # streamed: one batch at a time
                if index is None:
                    index = faiss.deserialize_index(faiss.serialize_index(build.template))
                    if build.on_disk:
                        faiss_index.start_on_disk(index, lists)
                faiss_index.add(index, ids, vectors)
            if index is None:  # no live items of `modality` in the segment
                self.files.pop(segment_role(reader.id, f"faiss/{modality}"), None)
                self.files.pop(segment_role(reader.id, f"ivfdata/{modality}"), None)
                continue
            if build.on_disk:
                faiss_index.finish_on_disk(index, lists)
            self._write_index(reader.id, modality, index)
            crashpoint(f"write-faiss-{modality}")
        self.written[f"trained/{modality}"] = self.path(f"trained-{modality}", "index")
        faiss_index.write(build.template, self.written[f"trained/{modality}"])
        self.write_reference(modality, build.reference())

    # --- a merge ------------------------------------------------------------------------

    def merge(self, start: int, end: int, rewrite: float = 0.25) -> None:
        """Replace segments [start, end) by one holding their live rows in the same order.
        Its tables and FAISS indexes are written anew, without the deleted rows; the
        embeddings files of the merged segments are immutable and become the new segment's
        as they are, unless more than `rewrite` of a file's rows are deleted (then its live
        vectors are written anew). The vectors of an index are read from the exact indexes
        when they are exact, else streamed from the embeddings, a batch at a time."""
        readers = self.old.segments[start:end]
        old_files = self.old.manifest.files
        for reader in readers:
            self._drop_segment_files(reader.id)
        crashpoint("merge-start")
        assets = pa.concat_tables([r.assets for r in readers])
        items = pa.concat_tables([r.items for r in readers])
        kept = self.segments[:start], self.segments[end:]
        self.segments = []
        self.add_segment(assets, items, {})
        sid = self.generation
        for modality in self.writer.widths or self.old.widths:
            part = 0
            for reader in readers:
                roles = reader.embedding_roles(modality)
                if not roles:
                    continue
                role = segment_role(sid, f"embeddings/{modality}/p{part:05d}")
                if _dead_share(reader, modality) > rewrite:
                    written = self._rewrite_part(reader, modality, role)
                    part += written
                    continue
                for old in roles:
                    self.files[segment_role(sid, f"embeddings/{modality}/p{part:05d}")] = old_files[
                        old
                    ]
                    part += 1
            batches = (b for r in readers for b in _live_vectors(r, modality))
            total = sum(r.live_count(modality) for r in readers)
            self._build_index(sid, modality, batches, total)
        self.segments = [*kept[0], *self.segments, *kept[1]]

    def _rewrite_part(self, reader: SegmentReader, modality: str, role: str) -> int:
        """The live vectors of `reader`'s `modality` in one new file; 1, or 0 when none."""
        import pyarrow.parquet as pq

        path = self.path(f"emb-{modality}-s{reader.id}", "parquet")
        parquet = None
        try:
            for ids, vectors in _live_vectors(reader, modality):
                if parquet is None:
                    schema = tables.embeddings_schema(vectors.shape[1])
                    parquet = pq.ParquetWriter(path, schema, compression="zstd")
                parquet.write_table(tables.embeddings_table(ids, vectors))
        finally:
            if parquet is not None:
                parquet.close()
        if parquet is None:
            return 0
        tables.fsync_file(path)
        self.written[role] = path
        crashpoint(f"write-embeddings-{modality}")
        return 1


def _gathered(batches: Iterable[Vectors], total: int) -> Vectors:
    """`batches` in one (ids, vectors) pair of `total` rows, filled in place."""
    ids, vectors = np.empty(total, np.int64), None
    at = 0
    for batch_ids, batch in batches:
        if vectors is None:
            vectors = np.empty((total, batch.shape[1]), np.float32)
        ids[at : at + len(batch_ids)] = batch_ids
        vectors[at : at + len(batch_ids)] = batch
        at += len(batch_ids)
    if vectors is None:
        return ids[:0], np.empty((0, 0), np.float32)
    return ids[:at], vectors[:at]


def _dead_share(reader: SegmentReader, modality: str) -> float:
    """The share of `reader`'s rows of `modality` that are deleted."""
    if not len(reader.deleted_items):
        return 0.0
    every = reader.all_items.filter(pc.equal(reader.all_items.column("modality"), modality))
    if not every.num_rows:
        return 0.0
    return 1 - reader.live_count(modality) / every.num_rows


def _live_vectors(reader: SegmentReader, modality: str) -> Iterable[Vectors]:
    """The live (ids, vectors) of a segment's `modality` in storage order, `MERGE_BATCH` at a
    time: viewed in its exact index when it has one (raw floats, read at disk speed), else
    read from its embeddings."""
    from xsearch.indexes.faiss_index import flat_vectors

    index = reader.load_faiss(modality) if reader.live_count(modality) else None
    flat = flat_vectors(index) if index is not None else None
    if flat is None:
        yield from reader.stored_batches(modality, MERGE_BATCH)
        return
    ids, vectors = flat
    live = ~np.isin(ids, reader.deleted_items) if len(reader.deleted_items) else None
    for at in range(0, len(ids), MERGE_BATCH):
        chunk = slice(at, at + MERGE_BATCH)
        if live is None:
            yield ids[chunk], vectors[chunk]
        elif live[chunk].any():
            yield ids[chunk][live[chunk]], vectors[chunk][live[chunk]]


MERGE_BATCH = 32_768  # vectors a merge holds at a time (128 MB at width 1024)


def next_sample(old, modality: str, dead, new_ids, new_vectors) -> Vectors:
    """The reference sample of `modality` once `dead` are removed and the new items added."""
    dim = new_vectors.shape[1] if new_vectors is not None else None
    previous = old.reference(modality) if old.manifest else None
    if previous is None or not len(previous[0]):
        previous = (np.empty(0, np.int64), np.empty((0, dim or 0), np.float32))
    sample = updated_sample(previous, dead, new_ids, new_vectors)
    if sample is None:  # refill from every live vector
        ids, vectors = old.embeddings(modality)
        keep = ~np.isin(ids, dead)
        ids = np.concatenate([ids[keep], new_ids])
        vectors = np.concatenate([vectors[keep], new_vectors.reshape(-1, vectors.shape[1])])
        sample = bottom_k(ids, vectors)
    return sample
