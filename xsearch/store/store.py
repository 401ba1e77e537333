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
from xsearch.store.names import generation_file, generation_of
from xsearch.store.reference import bottom_k, updated_sample

LOCK = "writer.lock"
DATA = "data"


class Store:
    """One generation of an index, read-only. Files are checked against the manifest's
    checksums before they are trusted."""

    def __init__(self, directory: Path, manifest: Manifest | None, placement=None) -> None:
        self.dir = directory
        self.manifest = manifest
        self.placement = placement  # indexes/placement.py: where searches run (None: CPU)
        if placement is not None and placement.gpu:
            from xsearch.indexes.placement import require_gpu

            require_gpu()  # before any work: one line when there is no GPU to use
        self._indexes: dict[str, object] = {}
        self._verified: set[str] = set()
        self._references: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.lock = threading.Lock()  # one DuckDB statement at a time on the shared connection
        self._loading = threading.Lock()  # one load (and GPU placement) of each FAISS index

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

    def _table(self, role: str, schema: pa.Schema) -> pa.Table:
        path = self.path(role)
        if path is None:
            return schema.empty_table()
        with self._reading():
            return tables.read_parquet(path, schema)

    @cached_property
    def assets(self) -> pa.Table:
        return self._table("assets", tables.ASSETS)

    @cached_property
    def items(self) -> pa.Table:
        return self._table("items", tables.ITEMS)

    @cached_property
    def failures(self) -> pa.Table:
        return self._table("failures", tables.FAILURES)

    @cached_property
    def items_by_id(self) -> RowsById:
        return RowsById(self.items, "item_id")

    @cached_property
    def assets_by_id(self) -> RowsById:
        return RowsById(self.assets, "asset_id")

    def embedding_roles(self, modality: str) -> list[str]:
        files = self.manifest.files if self.manifest else {}
        return sorted(r for r in files if r.startswith(f"embeddings/{modality}/"))

    def embeddings(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, vectors) of the live items of `modality`, in id order."""
        with self._reading():
            paths = [self.path(r) for r in self.embedding_roles(modality)]
            parts = [tables.read_parquet(path) for path in paths if path is not None]
        if not parts:
            return np.empty(0, np.int64), np.empty((0, self.widths.get(modality, 0)), np.float32)
        ids, vectors = tables.embeddings_arrays(pa.concat_tables(parts))
        live = np.isin(ids, self.item_ids(modality))
        order = np.argsort(ids[live], kind="stable")
        return ids[live][order], vectors[live][order]

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

    def faiss_index(self, modality: str):
        """The FAISS index of `modality` (loaded and verified once), or None when it has no
        items. Writers must not modify it in place: it is this generation's. Threads that ask
        at once wait for one load: a GPU holds one copy, not one per thread."""
        if modality not in self._indexes:
            with self._loading:
                if modality not in self._indexes:  # another thread may have loaded it meanwhile
                    from xsearch.indexes.placement import CPU, place

                    index = self.load_faiss(modality)
                    self._indexes[modality] = place(index, self.placement or CPU)
        return self._indexes[modality]

    def load_faiss(self, modality: str):
        """A fresh copy of the FAISS index of `modality` (or None), verified, for changing.
        An on-disk index maps its lists from their file, read-only (see `writable_copy`)."""
        from xsearch.indexes.faiss_index import read
        from xsearch.indexes.safety import UnsafeIndexFile, load_guarded
        from xsearch.store.manifest import repair_hint

        path = self.path(f"faiss/{modality}")  # checked against the manifest first
        if path is None:
            return None
        lists = self.path(f"ivfdata/{modality}")
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

        con = duckdb.connect(config={"enable_external_access": False})
        con.register("items", self.items)
        con.register("assets", self.assets)
        return con


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
        """Publish the previous generation plus `changes` as the next generation. Vectors of
        another width than the index's, or of a modality it does not have, are refused
        (UsageError) before anything is written."""
        self._check_vectors(changes)
        old = self.store
        gen = old.generation + 1
        data = old.dir / DATA
        files = dict(old.manifest.files) if old.manifest else {}

        removed = old.items.slice(0, 0)
        if changes.removed_assets:
            gone = pc.is_in(old.items.column("asset_id"), pa.array(sorted(changes.removed_assets)))
            removed = old.items.filter(gone)
        removed_items = set(removed.column("item_id").to_pylist())
        assets = _apply_assets(old.assets, changes)
        items = _apply_items(old.items, changes, removed_items)

        written: dict[str, Path] = {}
        for role, table in (("assets", assets), ("items", items)):
            written[role] = data / generation_file(role, gen, "parquet")
            tables.write_parquet(table, written[role])
            crashpoint(f"write-{role}")
        if changes.failures is not None:
            written["failures"] = data / generation_file("failures", gen, "parquet")
            tables.write_parquet(
                pa.Table.from_pylist(changes.failures, schema=tables.FAILURES), written["failures"]
            )
        for modality in self.widths or old.widths:
            parts = changes.new_vectors.get(modality, [])
            of_modality = pc.equal(removed.column("modality"), modality)
            dead = np.sort(removed.filter(of_modality).column("item_id").to_numpy())
            if not parts and not len(dead):
                continue
            ids = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
            width = (self.widths or old.widths)[modality]
            vecs = (
                np.concatenate([p[1] for p in parts]) if parts else np.empty((0, width), np.float32)
            )
            if parts:
                role = f"embeddings/{modality}/g{gen:08d}"
                written[role] = data / generation_file(f"emb-{modality}", gen, "parquet")
                tables.write_parquet(tables.embeddings_table(ids, vecs), written[role])
                crashpoint(f"write-embeddings-{modality}")
            index = self._next_index(old, modality, gen, dead, ids, vecs)
            self._add_index(files, written, index, modality, gen)
            crashpoint(f"write-faiss-{modality}")
            sample = _next_sample(old, modality, dead, ids, vecs)
            self._write_reference(files, written, modality, gen, sample)

        return self._publish(files, written, gen)

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

    def rebuild(self, embeddings: dict, factory: str = "Flat") -> Store:
        """Publish a generation whose FAISS files are built afresh. `embeddings` maps a modality
        to its (ids, vectors), indexed with `factory`, or to a function that builds the index
        itself (streaming, xsearch/store/rebuild.py): called with the file its on-disk lists
        may take, it returns (index, reference sample), or None when there are no items."""
        from xsearch.indexes.faiss_index import build

        gen = self.store.generation + 1
        files = dict(self.store.manifest.files) if self.store.manifest else {}
        written: dict[str, Path] = {}
        for m, source in embeddings.items():
            if callable(source):
                built = source(self._index_file(m, gen, "ivfdata"))
            else:
                ids, vecs = source
                built = (build(ids, vecs, factory), bottom_k(ids, vecs)) if len(ids) else None
            if built is not None:
                self._add_index(files, written, built[0], m, gen)
                crashpoint(f"write-faiss-{m}")
                self._write_reference(files, written, m, gen, built[1])
        return self._publish(files, written, gen)

    def _write_reference(self, files, written, modality: str, gen: int, sample) -> None:
        role = f"reference/{modality}"
        ids, vectors = sample
        if not len(ids):
            files.pop(role, None)
            return
        written[role] = self.store.dir / DATA / generation_file(f"ref-{modality}", gen, "parquet")
        tables.write_parquet(tables.embeddings_table(ids, vectors), written[role])
        crashpoint(f"write-reference-{modality}")

    def _publish(self, files: dict[str, FileEntry], written: dict[str, Path], gen: int) -> Store:
        directory = self.store.dir
        fsync_dir(directory / DATA)
        crashpoint("fsync-data")
        for role, path in written.items():
            rel = str(path.relative_to(directory))
            files[role] = FileEntry(rel, sha256_file(path), path.stat().st_size)
        manifest = Manifest(
            generation=gen,
            model=self.model,
            files=files,
            next_item_id=self.next_item_id,
            next_asset_id=self.next_asset_id,
            widths=dict(self.widths or {}),
            recipe=self.recipe,
        )
        publish(directory, manifest)
        crashpoint("publish")
        previous, self.store = self.store.manifest, Store(directory, manifest)
        self._clean_leftovers(previous)
        return self.store

    def _next_index(self, old: Store, modality, gen, dead, ids, vecs):
        """The previous index of `modality` minus `dead` plus the new vectors (an on-disk
        index gets its lists copied into this generation's file first)."""
        from xsearch.indexes.faiss_index import build, finish_on_disk, update, writable_copy

        index = old.load_faiss(modality)  # a copy: the cached one belongs to readers
        if index is None:
            return build(ids, vecs)
        lists = self._index_file(modality, gen, "ivfdata")
        index = writable_copy(index, lists)
        try:
            index = update(index, dead, ids, vecs)
        except RuntimeError as e:  # the removal fails first, before anything has changed
            if "remove_ids not implemented" not in str(e):
                raise
            # A type that cannot remove (HNSW): the same type, trained, refilled from the
            # live vectors of the store (its source of truth) plus the new ones.
            live_ids, live = old.embeddings(modality)
            keep = ~np.isin(live_ids, dead)
            index.reset()
            index = update(
                index,
                np.empty(0, np.int64),
                np.concatenate([live_ids[keep], ids]),
                np.concatenate([live[keep], vecs.reshape(-1, live.shape[1])]),
            )
        finish_on_disk(index, lists)
        return index

    def _add_index(self, files, written, index, modality: str, gen: int) -> None:
        """Write `index` as this generation's index of `modality`, with its on-disk lists."""
        from xsearch.indexes.faiss_index import ivfdata_file, write

        written[f"faiss/{modality}"] = self._index_file(modality, gen, "index")
        write(index, written[f"faiss/{modality}"])
        lists = ivfdata_file(index)
        if lists is not None:
            written[f"ivfdata/{modality}"] = lists
        else:
            files.pop(f"ivfdata/{modality}", None)

    def _index_file(self, modality: str, gen: int, kind: str) -> Path:
        return self.store.dir / DATA / generation_file(f"faiss-{modality}", gen, kind)


def _next_sample(old: Store, modality: str, dead, new_ids, new_vectors):
    """The reference sample of `modality` once `dead` are removed and the new items added."""
    dim = new_vectors.shape[1] if new_vectors is not None else None
    new_vectors = new_vectors if new_vectors is not None else np.empty((0, 0), np.float32)
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


def _apply_assets(assets: pa.Table, changes: Changes) -> pa.Table:
    if changes.removed_assets:
        keep = pc.invert(
            pc.is_in(assets.column("asset_id"), pa.array(sorted(changes.removed_assets)))
        )
        assets = assets.filter(keep)
    if changes.renamed:
        rows = assets.to_pylist()
        for row in rows:
            row["path"] = changes.renamed.get(row["asset_id"], row["path"])
        assets = pa.Table.from_pylist(rows, schema=tables.ASSETS)
    new = pa.Table.from_pylist(changes.new_assets, schema=tables.ASSETS)
    return pa.concat_tables([assets, new])


def _apply_items(items: pa.Table, changes: Changes, removed: set[int]) -> pa.Table:
    if removed:
        items = items.filter(
            pc.invert(pc.is_in(items.column("item_id"), pa.array(sorted(removed))))
        )
    new = pa.Table.from_pylist(changes.new_items, schema=tables.ITEMS)
    return pa.concat_tables([items, new])


def describe_model(model: dict[str, str]) -> str:
    weights = model.get("weights", "?")
    return (
        f"{model.get('config', '?')} ({weights[:12] if weights != 'random' else 'random weights'})"
    )
