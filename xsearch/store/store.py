"""Opening an index directory for reading, and committing a new generation to it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xsearch.errors import UsageError
from xsearch.store import binding, tables
from xsearch.store.draft import Draft, IndexBuild, MergePolicy, next_sample
from xsearch.store.fsutil import crashpoint, fsync_dir, make_dirs, sha256_file
from xsearch.store.location import index_dir, index_root  # noqa: F401
from xsearch.store.lock import WriterLock
from xsearch.store.lookup import RowsById
from xsearch.store.manifest import (
    FileEntry,
    Manifest,
    StoreCorrupt,
    kept_manifest,
    publish,
    read_manifest,
)
from xsearch.store.names import generation_of
from xsearch.store.reference import bottom_k
from xsearch.store.segments import SegmentedIndex, SegmentReader, segment_role

LOCK = "writer.lock"
WHERE_MEMORY = "2GB"  # what user SQL (`where` filters) may hold; past it, a one-line error
DATA = "data"


class Store:
    """One generation of an index, read-only: its segments (store/segments.py), read as they
    are used. Opening reads the manifest alone; each file is checked against the manifest's
    size and checksum when first read."""

    def __init__(self, directory: Path, manifest: Manifest | None, placement=None) -> None:
        self.dir = directory
        self.manifest = manifest
        self.placement = placement  # indexes/placement.py: where searches run (None: CPU)
        if placement is not None and placement.gpu:
            from xsearch.indexes.placement import require_gpu

            require_gpu()  # before any work: one line when there is no GPU to use
        self._verified: set[str] = set()
        self._references: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._readers: dict[int, SegmentReader] = {}
        self._opening = threading.Lock()
        self.lock = threading.Lock()  # one DuckDB statement at a time on the shared connection

    @classmethod
    def open(cls, directory: Path, create: bool = False, placement=None) -> Store:
        """The published generation. A damaged or missing manifest raises StoreCorrupt naming
        it: never a silent fall back to an older generation (`xsearch verify --repair`
        restores one, and says what that loses)."""
        if create:
            make_dirs(directory / DATA)  # each new folder synced in its parent
        elif not directory.is_dir():
            raise UsageError(f"no index at {directory} (create one with `xsearch ingest`)")
        return cls(directory, read_manifest(directory), placement)

    def follow(self, manifest: Manifest) -> Store:
        """The generation `manifest` describes, keeping what this one has read of the segments
        the two share: following a commit reads only the segments it added or changed."""
        newer = Store(self.dir, manifest, self.placement)
        newer._verified = {
            role for role in self._verified
            if self.manifest and manifest.files.get(role) == self.manifest.files.get(role)
        }  # fmt: skip
        for reader in self.segments:
            if (
                manifest.segment(reader.id) == reader.segment
                and all(
                    manifest.files.get(role) == entry for role, entry in reader.entries().items()
                )
                and len(reader.entries()) == len(_segment_entries(manifest, reader.id))
            ):
                reader.store = newer
                newer._readers[reader.id] = reader
        if self.manifest and all(
            manifest.files.get(r) == self.manifest.files.get(r)
            for r in {*manifest.files, *self.manifest.files} if r.startswith("reference/")
        ):  # fmt: skip
            newer._references = dict(self._references)
        return newer

    @property
    def generation(self) -> int:
        return self.manifest.generation if self.manifest else 0

    @cached_property
    def widths(self) -> dict[str, int]:
        """Modality -> vector width, in the order image, audio, text: what the manifest
        records (or, for an index written before it did, what its stored vectors say)."""
        return binding.index_widths(self.dir, self.manifest)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this index holds vectors of (or may), in the order image, audio, text."""
        return tuple(self.widths)

    @property
    def recipe(self) -> dict | None:
        """How ingest cut this index's items (window length, frames), or None when not told."""
        return self.manifest.recipe if self.manifest else None

    @property
    def segments(self) -> list[SegmentReader]:
        """The readers of this generation's segments, in order."""
        if self.manifest is None:
            return []
        with self._opening:  # threads asking at once share one reader (one load) per segment
            for segment in self.manifest.segments:
                if segment.id not in self._readers:
                    self._readers[segment.id] = SegmentReader(self, segment)
            return [self._readers[s.id] for s in self.manifest.segments]

    def path(self, role: str) -> Path | None:
        """The verified file for `role`, or None when this generation has none."""
        if self.manifest is None or role not in self.manifest.files:
            return None
        from xsearch.store.manifest import file_problem, repair_hint

        entry = self.manifest.files[role]
        path = self.dir / entry.path
        if role in self._verified:
            return path
        problem = file_problem(path, entry)
        if problem:
            raise StoreCorrupt(f"{path}: {problem}; {repair_hint(self.dir)}")
        self._verified.add(role)  # files of a generation never change once published
        return path

    @contextmanager
    def _reading(self):
        """A file checked by `path` that is gone by the time it is read: a later commit deleted
        it (a reader two generations behind loses its files). StoreCorrupt, like any file
        this generation cannot give, so readers follow the newer one (Index.search does)."""
        try:
            yield
        except FileNotFoundError as e:
            raise StoreCorrupt(
                f"{e.filename}: deleted by a newer generation while being read; "
                "open the index again"
            ) from None

    def table(self, role: str, schema: pa.Schema | None = None) -> pa.Table:
        """The Parquet file of `role`, verified; an empty table of `schema` when there is none."""
        path = self.path(role)
        if path is None:
            return schema.empty_table() if schema is not None else pa.table({})
        with self._reading():
            return tables.read_parquet(path, schema)

    def _concat(self, parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
        return pa.concat_tables(parts) if parts else schema.empty_table()

    @cached_property
    def assets(self) -> pa.Table:
        return self._concat([s.assets for s in self.segments], tables.ASSETS)

    @cached_property
    def items(self) -> pa.Table:
        return self._concat([s.items for s in self.segments], tables.ITEMS)

    @cached_property
    def failures(self) -> pa.Table:
        return self.table("failures", tables.FAILURES)

    @cached_property
    def items_by_id(self) -> SegmentedRows:
        return SegmentedRows([s.items_by_id for s in self.segments])

    @cached_property
    def assets_by_id(self) -> SegmentedRows:
        return SegmentedRows([s.assets_by_id for s in self.segments])

    def count(self, modality: str) -> int:
        """Live items of `modality`, from the manifest (no file read)."""
        return sum(s.live_count(modality) for s in self.segments)

    def asset_count(self) -> int:
        """Live assets, from the manifest (a format-1 segment: from its table)."""
        return sum(
            s.segment.assets if s.segment.rows >= 0 else s.assets.num_rows for s in self.segments
        )

    def embedding_roles(self, modality: str) -> list[str]:
        return [role for s in self.segments for role in s.embedding_roles(modality)]

    def embeddings(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, vectors) of the live items of `modality`, in id order."""
        parts = [s.embeddings(modality) for s in self.segments if s.embedding_roles(modality)]
        if not parts:
            return np.empty(0, np.int64), np.empty((0, self.widths.get(modality, 0)), np.float32)
        ids = np.concatenate([p[0] for p in parts])
        vectors = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        order = np.argsort(ids, kind="stable")
        return ids[order], vectors[order]

    def vectors(self, item_ids: list[int]) -> np.ndarray:
        """The stored vectors of `item_ids`, in that order."""
        import pyarrow.parquet as pq

        wanted = pa.array(item_ids, type=pa.int64())
        rows = self.items.filter(pc.is_in(self.items.column("item_id"), wanted))
        missing = set(item_ids) - set(rows.column("item_id").to_pylist())
        if missing:
            raise UsageError(f"index {self.dir.name} has no item {min(missing)}")
        found: dict[int, np.ndarray] = {}
        for modality in set(rows.column("modality").to_pylist()):
            for role in self.embedding_roles(modality):
                with self._reading():
                    part = pq.read_table(self.path(role), filters=[("item_id", "in", item_ids)])
                ids, vectors = tables.embeddings_arrays(part)
                found.update(zip(ids.tolist(), vectors))
        return np.stack([found[i] for i in item_ids])

    def reference(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the reference sample of `modality` (see store/reference.py)."""
        if modality not in self._references:
            path = self.path(f"reference/{modality}")
            if path is not None:
                with self._reading():
                    sample = tables.embeddings_arrays(tables.read_parquet(path))
            else:  # a store written before samples were kept
                sample = bottom_k(*self.embeddings(modality))
            self._references[modality] = sample
        return self._references[modality]

    def item_ids(self, modality: str) -> np.ndarray:
        mask = pc.equal(self.items.column("modality"), modality)
        return self.items.filter(mask).column("item_id").to_numpy()

    def indexes(self, modality: str) -> list[tuple[SegmentReader, object]]:
        """(segment, FAISS index) of each segment with items of `modality`, in order."""
        found = []
        for reader in self.segments:
            if reader.live_count(modality) or reader.segment.rows < 0:
                index = reader.faiss_index(modality)
                if index is not None and index.ntotal:
                    found.append((reader, index))
        return found

    def faiss_index(self, modality: str):
        """The FAISS index of `modality` (None when it has no items): the index itself when
        one segment holds them all with none deleted (a store just rebuilt or compacted),
        else a read-only view of the segments' indexes as one (`SegmentedIndex`)."""
        found = self.indexes(modality)
        if not found:
            return None
        if len(found) == 1 and not len(found[0][0].deleted_items):
            return found[0][1]
        return SegmentedIndex(found, modality)

    def read_faiss(self, role: str, lists_role: str | None = None):
        """A fresh copy of the FAISS index of `role` (or None), verified. An on-disk index maps
        its lists from their file (`lists_role`), read-only."""
        from xsearch.indexes.faiss_index import read
        from xsearch.indexes.safety import UnsafeIndexFile, load_guarded
        from xsearch.store.manifest import repair_hint

        path = self.path(role)  # checked against the manifest first
        if path is None:
            return None
        lists = self.path(lists_role) if lists_role else None
        try:  # and, should the manifest be forged too, loaded within bounded memory
            with self._reading():
                return load_guarded(path, lambda: read(path, lists))
        except UnsafeIndexFile as e:
            raise StoreCorrupt(
                f"{path}: not a loadable FAISS index ({e}); {repair_hint(self.dir)}"
            ) from None

    @cached_property
    def sql(self):
        """A DuckDB connection with this generation's `items` and `assets` tables. User SQL
        runs here, so it may read these tables and nothing else (no files, no network)."""
        import duckdb

        con = duckdb.connect(config={"enable_external_access": False, "memory_limit": WHERE_MEMORY})
        con.register("items", self.items)
        con.register("assets", self.assets)
        return con


class SegmentedRows:
    """Rows by id over the segments' lookups (an id lives in one segment)."""

    def __init__(self, parts: list[RowsById]) -> None:
        self.parts = parts

    def rows(self, keys) -> list[dict | None]:
        found: list[dict | None] = [None] * len(keys)
        for part in self.parts:
            missing = [i for i, row in enumerate(found) if row is None]
            if not missing:
                break
            for i, row in zip(missing, part.rows([keys[i] for i in missing])):
                found[i] = row
        return found

    def row(self, key: int) -> dict | None:
        return self.rows([key])[0]


def _segment_entries(manifest: Manifest, segment_id: int) -> dict[str, FileEntry]:
    prefix = segment_role(segment_id, "")
    return {r: e for r, e in manifest.files.items() if r.startswith(prefix)}


@dataclass
class Changes:
    """What one commit does to the previous generation."""

    new_assets: list[dict] = field(default_factory=list)
    new_items: list[dict] = field(default_factory=list)
    new_vectors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    renamed: dict[int, str] = field(default_factory=dict)  # asset id -> new path
    removed_assets: set[int] = field(default_factory=set)
    failures: list[dict] | None = None  # None keeps the previous list
    # ids of new items taken back before the commit (their file failed half-way); vectors
    # of theirs that an embedder hands in later are dropped too
    discarded: set[int] = field(default_factory=set)

    def add_vectors(self, modality: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.discarded:
            ids, vectors = self._kept(ids, vectors)
            if not len(ids):
                return
        self.new_vectors.setdefault(modality, []).append((ids, vectors))

    def discard_items(self, ids: Iterable[int]) -> None:
        """Take back new items (and their vectors, now or when they come)."""
        self.discarded.update(int(i) for i in ids)
        self.new_items = [item for item in self.new_items if item["item_id"] not in self.discarded]
        for modality, parts in self.new_vectors.items():
            kept = [self._kept(ids, vectors) for ids, vectors in parts]
            self.new_vectors[modality] = [(ids, vectors) for ids, vectors in kept if len(ids)]

    def _kept(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = ~np.isin(ids, np.fromiter(self.discarded, np.int64, len(self.discarded)))
        return ids[keep], vectors[keep]

    def empty(self) -> bool:
        return (
            not (self.new_assets or self.new_items or self.renamed or self.removed_assets)
            and self.failures is None
        )


class Writer:
    """Holds the index's writer lock; `commit` publishes one new generation atomically.

    Files of generation N are written aside under `data/` with `-gN` in their name and
    fsynced, then `manifest.json` is replaced in one rename. A crash before the rename leaves
    generation N-1 published; the next writer deletes the leftovers.

    `widths` (modality -> vector width) and `recipe` (how ingest cut the items) are recorded
    by the first commit that knows them; a writer asking for others than those recorded is
    refused here, and a commit refuses vectors of another width (see store/binding.py). Left
    None, they are the index's own (widths: else those of the first commit's vectors).
    """

    def __init__(
        self,
        directory: Path,
        model: dict[str, str],
        widths: dict[str, int] | None = None,
        recipe: dict | None = None,
    ) -> None:
        Store.open(directory, create=True)  # make sure the directory exists
        self.lock = WriterLock(directory / LOCK)
        self.lock.acquire()
        try:
            self.store = Store.open(directory)  # read under the lock
            self.model = model
            self._check_model()
            self.widths = self._check_widths(widths)
            self.recipe = self._check_recipe(recipe)
        except BaseException:
            self.close()
            raise
        self._clean_leftovers()
        m = self.store.manifest
        self.next_item_id = m.next_item_id if m else 0
        self.next_asset_id = m.next_asset_id if m else 0

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_model(self) -> None:
        m = self.store.manifest
        if m and m.model and m.model != self.model:
            raise UsageError(
                f"index {self.store.dir.name} was built with {describe_model(m.model)}; "
                f"this run uses {describe_model(self.model)} (use the same weights, or a new index)"
            )

    def _check_widths(self, asked: dict[str, int] | None) -> dict[str, int] | None:
        """The widths this writer commits with: the index's, which `asked` must equal; None
        while neither the index nor the caller tells (the first commit's vectors will)."""
        known = binding.known_widths(self.store.dir, self.store.manifest)
        if asked is None:
            return known
        asked = binding.check_widths(asked)
        if known is not None:
            refusal = binding.widths_refusal(self.store.dir.name, known, asked)
            if refusal:
                raise UsageError(refusal)
        return asked

    def _check_recipe(self, asked: dict | None) -> dict | None:
        """The recipe this writer records: `asked`, which must equal a recorded one."""
        m = self.store.manifest
        recorded = m.recipe if m else None
        if asked is None:
            return recorded
        if recorded is not None:
            refusal = binding.recipe_refusal(self.store.dir.name, recorded, asked)
            if refusal:
                raise UsageError(refusal)
        return dict(asked)

    def _clean_leftovers(self, previous: Manifest | None = None) -> None:
        """Delete data files that no published generation needs: those of a crashed commit, and
        those the last two generations do not use (readers of the previous generation may
        still be opening its files, some of which an older generation wrote). `previous`: the
        previous generation's manifest, else read from its kept copy."""
        store = self.store
        gen = store.generation
        previous = previous or kept_manifest(store.dir, gen - 1)
        used = {e.path for m in (store.manifest, previous) if m for e in m.files.values()}
        for path in (store.dir / DATA).iterdir():
            file_gen = generation_of(path.name)
            file_gen = -1 if file_gen is None else file_gen
            unused = f"{DATA}/{path.name}" not in used
            if unused and (file_gen > gen or file_gen < gen - 1):
                path.unlink()
        for path in store.dir.glob(".*.tmp-*"):
            path.unlink()

    def allocate_items(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_item_id, self.next_item_id + n, dtype=np.int64)
        self.next_item_id += n
        return ids

    def allocate_asset(self) -> int:
        self.next_asset_id += 1
        return self.next_asset_id - 1

    def commit(self, changes: Changes) -> Store:
        """Publish the previous generation plus `changes` as the next generation: one new
        segment with what the changes add, and deletion markers for the rows of older
        segments that they remove or replace (a renamed file's asset row moves to the new
        segment). Nothing an older generation wrote is rewritten. Vectors of another width
        than the index's, or of a modality it does not have, are refused (UsageError)
        before anything is written."""
        self._check_vectors(changes)
        old = self.store
        draft = Draft(self, old.generation + 1)
        removed, moved = draft.delete(changes.removed_assets, changes.renamed)
        if changes.failures is not None:
            draft.write_table(
                "failures",
                "failures",
                pa.Table.from_pylist(changes.failures, schema=tables.FAILURES),
            )
        assets = pa.concat_tables(
            [pa.Table.from_pylist(changes.new_assets, schema=tables.ASSETS), moved]
        )
        items = pa.Table.from_pylist(changes.new_items, schema=tables.ITEMS)
        vectors = {}
        for modality in self.widths or old.widths:
            parts = changes.new_vectors.get(modality, [])
            if parts:
                vectors[modality] = (
                    np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts]),
                )
        draft.add_segment(assets, items, vectors)
        for modality in self.widths or old.widths:
            of_modality = pc.equal(removed.column("modality"), modality)
            dead = np.sort(removed.filter(of_modality).column("item_id").to_numpy())
            if modality not in vectors and not len(dead):
                continue
            width = (self.widths or old.widths)[modality]
            ids, vecs = vectors.get(
                modality, (np.empty(0, np.int64), np.empty((0, width), np.float32))
            )
            draft.write_reference(modality, next_sample(old, modality, dead, ids, vecs))
        return self._publish(draft)

    def _check_vectors(self, changes: Changes) -> None:
        """Refuse vectors the index cannot hold; the first vectors of an index whose widths
        nobody told fix them."""
        widths = self.widths or binding.widths_of(changes.new_vectors)
        for modality, parts in changes.new_vectors.items():
            for _, vectors in parts:
                refusal = binding.vectors_refusal(self.store.dir.name, widths, modality, vectors)
                if refusal:
                    raise UsageError(refusal)
        self.widths = widths or None

    def upgrade(self) -> Store:
        """Publish the index in the current format (a generation written in an older one is
        read as it is; its first commit, or this, records it anew, rewriting no data)."""
        return self._publish(Draft(self, self.store.generation + 1))

    def rebuild(self, builds: dict, factory: str = "Flat") -> Store:
        """Publish a generation whose FAISS files are built afresh: each segment's index of a
        modality in `builds` (modality -> `IndexBuild`, or (ids, vectors) for an exact
        index), all from one trained template that later segments reuse."""
        draft = Draft(self, self.store.generation + 1)
        for modality, build in builds.items():
            if not isinstance(build, IndexBuild):
                ids, vectors = build
                build = IndexBuild.exact(ids, vectors, factory)
            draft.rebuild_indexes(modality, build)
        return self._publish(draft)

    def compact(self, policy: MergePolicy | None = None) -> list[Store]:
        """Merge segments while `policy` finds a run worth merging, each merge a commit of
        its own; the generations published."""
        policy = policy or MergePolicy()
        published = []
        while run := policy.pick(self.store.manifest.segments if self.store.manifest else ()):
            draft = Draft(self, self.store.generation + 1)
            draft.merge(*run)
            published.append(self._publish(draft))
        return published

    def _publish(self, draft: Draft) -> Store:
        directory = self.store.dir
        fsync_dir(directory / DATA)
        crashpoint("fsync-data")
        files = draft.files
        for role, path in draft.written.items():
            rel = str(path.relative_to(directory))
            files[role] = FileEntry(rel, sha256_file(path), path.stat().st_size)
        manifest = Manifest(
            generation=draft.generation,
            model=self.model,
            files=files,
            next_item_id=self.next_item_id,
            next_asset_id=self.next_asset_id,
            widths=dict(self.widths or {}),
            recipe=self.recipe,
            segments=tuple(draft.segments),
        )
        publish(directory, manifest)
        crashpoint("publish")
        previous = self.store.manifest
        self.store = self.store.follow(manifest)
        self._clean_leftovers(previous)
        return self.store


def full_merge() -> MergePolicy:
    """The policy that merges every segment into one."""
    from xsearch.store.draft import FullMerge

    return FullMerge()


def describe_model(model: dict[str, str]) -> str:
    weights = model.get("weights", "?")
    return (
        f"{model.get('config', '?')} ({weights[:12] if weights != 'random' else 'random weights'})"
    )
