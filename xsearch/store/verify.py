"""`xsearch verify`: check every file of an index, and what the files say about each other.

Each file of a generation is checked against its recorded size and sha256, then read (Parquet
with its schema, FAISS as the store loads it), then compared with the others: ids unique and
below the manifest's next ids, every item with an asset and a stored vector of its modality's
width, each FAISS index holding exactly the live items (and their stored vectors, when it keeps
them exactly), each reference sample the bottom-k sketch of the stored vectors. What a check
finds is a `Check`; what can be done about it is store/repair.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from xsearch.errors import UsageError
from xsearch.store import tables
from xsearch.store.binding import index_widths
from xsearch.store.manifest import (
    MANIFEST,
    Manifest,
    StoreCorrupt,
    file_problem,
    kept_manifest,
    manifest_copies,
    read_manifest,
)
from xsearch.store.names import generation_of, manifest_copy_generation
from xsearch.store.reference import bottom_k
from xsearch.store.segments import DELETED, local_role, segment_role
from xsearch.store.store import DATA, LOCK

SOURCE = ("assets", "items")  # with embeddings/*: what nothing else can re-create
_SAMPLE = 10_000  # vectors of a FAISS index compared with the stored embeddings


@dataclass
class Check:
    """One file of the index (or one role without a file), and what is wrong with it."""

    file: str  # relative to the index directory
    role: str  # manifest, assets, items, failures, embeddings/M/gN, faiss/M, reference/M, lock
    problem: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict:
        return {"file": self.file, "role": self.role, "ok": self.ok, "problem": self.problem,
                "note": self.note}  # fmt: skip


@dataclass
class Verdict:
    """The checks of one generation of an index (the published one unless told otherwise)."""

    directory: Path
    manifest: Manifest | None
    checks: list[Check] = field(default_factory=list)
    # what the checks read, for the repair: role -> table or index; modality -> live item ids
    loaded: dict[str, object] = field(default_factory=dict, repr=False)
    live: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # segment id -> (every item row it wrote, its live rows)
    segment_items: dict[int, tuple] = field(default_factory=dict, repr=False)
    widths: dict[str, int] = field(default_factory=dict, repr=False)  # the index's (binding.py)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def generation(self) -> int:
        """The generation checked; 0 for an index with none (or an unreadable manifest)."""
        return self.manifest.generation if self.manifest else 0

    def bad(self) -> dict[str, Check]:
        return {c.role: c for c in self.checks if not c.ok}


def kind_of_role(role: str) -> str:
    """source (only re-ingesting re-creates it), failures, derived, or manifest."""
    role = local_role(role)
    if role in SOURCE or role.startswith("embeddings/") or role == "deleted":
        return "source"
    if role.startswith(("faiss/", "ivfdata/", "reference/", "trained/")):
        return "derived"
    return role


def verify_index(directory: Path, manifest: Manifest | None = None) -> Verdict:
    """Check the published generation of the index at `directory` (or the generation that
    `manifest` describes): every file against its recorded size and sha256, then what the
    files say against each other. Never raises for damage: each problem is a Check."""
    if not directory.is_dir():
        raise UsageError(f"no index at {directory} (create one with `xsearch ingest`)")
    verdict = Verdict(directory, manifest)
    if manifest is None:
        try:
            verdict.manifest = read_manifest(directory)
            verdict.checks.append(Check(MANIFEST, "manifest"))
        except StoreCorrupt as e:
            problem = str(e).removeprefix(f"{directory / MANIFEST}: ").split("; run `")[0]
            copies = manifest_copies(directory)
            note = f"copies of generations {sorted(copies)} are kept in data/" if copies else None
            verdict.checks.append(Check(MANIFEST, "manifest", problem, note))
            verdict.checks.append(_lock_check(directory))
            return verdict
        if verdict.manifest is None:
            verdict.checks[0].note = "no generation published yet (an empty index)"
            verdict.checks.append(_lock_check(directory))
            return verdict
    m = verdict.manifest
    verdict.widths = index_widths(directory, m)
    checks = {role: Check(entry.path, role) for role, entry in sorted(m.files.items())}
    for role, check in checks.items():
        check.problem = file_problem(directory / check.file, m.files[role])
    for role, check in checks.items():
        if check.ok and "ivfdata/" not in role:  # on-disk lists: read with their index
            lists = role.replace("faiss/", "ivfdata/", 1) if "faiss/" in role else None
            _read(verdict, check, checks.get(lists) if lists else None)
    verdict.checks += checks.values()
    _check_consistency(verdict)
    verdict.checks.append(_lock_check(directory))
    previous = kept_manifest(directory, m.generation - 1)  # its readers may still open them
    used = {e.path for one in (m, previous) if one for e in one.files.values()}
    stray = []
    for path in sorted((directory / DATA).glob("*")):
        gen = generation_of(path.name)
        gen = -1 if gen is None else gen
        copy = manifest_copy_generation(path.name) is not None
        kept = copy or gen == m.generation - 1  # outlive one commit
        if f"{DATA}/{path.name}" not in used and not (kept and gen <= m.generation):
            stray.append(path.name)
    if stray:
        verdict.checks[0].note = (
            f"{len(stray)} leftover files in data/ (a crashed commit's, or older generations'); "
            "the next ingest deletes them"
        )
    return verdict


def _read(verdict: Verdict, check: Check, lists: Check | None) -> None:
    """Read a sound file's content: Parquet with its schema, FAISS as the store loads it."""
    path = verdict.directory / check.file
    role = local_role(check.role)
    try:
        if role.startswith(("faiss/", "trained/")):
            if lists is not None and not lists.ok:
                return  # the index cannot be read without its lists: their check says why
            lists_path = verdict.directory / lists.file if lists is not None else None
            verdict.loaded[check.role] = _load_faiss(path, lists_path)
        else:
            schema = {
                "assets": tables.ASSETS,
                "items": tables.ITEMS,
                "failures": tables.FAILURES,
                "deleted": DELETED,
            }.get(role)
            verdict.loaded[check.role] = tables.read_parquet(path, schema)
    except Exception as e:  # the checksum matched: the manifest itself was forged or stale
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        check.problem = f"unreadable despite a matching checksum ({reason})"


def _load_faiss(path: Path, lists: Path | None):
    from xsearch.indexes.faiss_index import read
    from xsearch.indexes.safety import load_guarded

    return load_guarded(path, lambda: read(path, lists))


def _check_consistency(verdict: Verdict) -> None:
    """What the individually sound files say about each other: each segment's tables, less
    its deleted rows, against its vectors and indexes; ids unique across segments."""
    m, loaded = verdict.manifest, verdict.loaded
    checks = {c.role: c for c in verdict.checks}
    all_assets, all_items, readable = [], [], True
    for segment in m.segments:
        live = _segment_rows(verdict, checks, segment)
        if live is None:
            readable = False
            continue
        all_assets.append(live[0])
        all_items.append(live[1])
    assets = pa.concat_tables(all_assets) if all_assets else tables.ASSETS.empty_table()
    items = pa.concat_tables(all_items) if all_items else tables.ITEMS.empty_table()
    if readable:
        loaded["assets"], loaded["items"] = assets, items
    first = {kind: _first_role(checks, m, kind) for kind in ("assets", "items")}
    ids = assets.column("asset_id").to_numpy()
    if len(np.unique(ids)) != len(ids):
        first["assets"].problem = "duplicate asset ids"
    elif len(ids) and ids.max() >= m.next_asset_id:
        first["assets"].problem = "asset ids beyond the manifest's next id"
    if not readable:
        return
    ids = items.column("item_id").to_numpy()
    modalities = np.array(items.column("modality").to_pylist(), dtype=object)
    if len(np.unique(ids)) != len(ids):
        first["items"].problem = "duplicate item ids"
        return
    if len(ids) and ids.max() >= m.next_item_id:
        first["items"].problem = "item ids beyond the manifest's next id"
    unknown = sorted(set(modalities) - set(tables.MODALITIES))
    foreign = sorted(set(modalities) - set(verdict.widths))
    if unknown:
        first["items"].problem = f"items of unknown modality {unknown[0]!r}"
    elif foreign:
        first["items"].problem = f"items of modality {foreign[0]!r}, which the index does not hold"
    orphans = ~np.isin(items.column("asset_id").to_numpy(), assets.column("asset_id"))
    if orphans.any():
        first["items"].problem = f"{int(orphans.sum())} items belong to no asset"
    for modality in verdict.widths:
        verdict.live[modality] = np.sort(ids[modalities == modality])
        stored = [_check_modality(verdict, checks, modality, s) for s in m.segments]
        if all(v is not None for v in stored):
            _check_reference(verdict, checks, modality, stored)


class _NoCheck(Check):
    """Where a problem of a role without a file is recorded (an index with no items)."""


def _first_role(checks: dict[str, Check], m: Manifest, kind: str) -> Check:
    for segment in reversed(m.segments):
        check = checks.get(segment_role(segment.id, kind))
        if check is not None:
            return check
    return _NoCheck(kind, kind)


def _segment_rows(verdict: Verdict, checks: dict[str, Check], segment):
    """(live assets, live items) of a segment, or None when one of its tables is unreadable;
    counts that differ from the manifest's are a problem of its items."""
    loaded = verdict.loaded
    parts = {}
    for kind, schema in (("assets", tables.ASSETS), ("items", tables.ITEMS)):
        role = segment_role(segment.id, kind)
        if role in checks and not checks[role].ok:
            return None
        parts[kind] = loaded.get(role, schema.empty_table())
    deleted = loaded.get(segment_role(segment.id, "deleted"))
    if segment_role(segment.id, "deleted") in checks and deleted is None:
        return None
    dead_items = dead_assets = np.empty(0, np.int64)
    if deleted is not None:
        dead_items = deleted.column("item_id").drop_null().to_numpy()
        dead_assets = deleted.column("asset_id").drop_null().to_numpy()
    assets = parts["assets"].filter(~np.isin(parts["assets"].column("asset_id"), dead_assets))
    items = parts["items"].filter(~np.isin(parts["items"].column("item_id"), dead_items))
    verdict.segment_items[segment.id] = (parts["items"], items)
    if segment.rows >= 0:
        counted = {
            mod: int(n)
            for mod, n in zip(*np.unique(items.column("modality").to_pylist(), return_counts=True))
        } if items.num_rows else {}  # fmt: skip
        if counted != dict(segment.live) or assets.num_rows != segment.assets:
            where = checks.get(segment_role(segment.id, "items")) or _first_role(
                checks, verdict.manifest, "assets"
            )
            where.problem = f"segment {segment.id}: the manifest's counts differ from its rows"
    return assets, items


def _check_modality(verdict: Verdict, checks: dict[str, Check], modality: str, segment):
    """A segment's vectors and index of `modality`: (ids, vectors) of its live items, in id
    order, or None when they cannot be read."""
    m, loaded = verdict.manifest, verdict.loaded
    every, items = verdict.segment_items[segment.id]
    of_modality = np.asarray(items.column("modality").to_pylist(), dtype=object) == modality
    live = np.sort(items.column("item_id").to_numpy()[of_modality])
    prefix = segment_role(segment.id, f"embeddings/{modality}")
    parts = sorted(r for r in m.files if r == prefix or r.startswith(prefix + "/"))
    vectors = None
    width = verdict.widths[modality]
    for role in parts:
        if checks[role].ok and (got := _width(loaded[role])) != width:
            checks[
                role
            ].problem = f"vectors of width {got}; the index's {modality} width is {width}"
    items_check = checks.get(segment_role(segment.id, "items"))
    if all(checks[r].ok for r in parts):
        ids, vectors = concat_embeddings(loaded, parts)
        if len(np.unique(ids)) != len(ids):
            for r in parts:
                checks[r].problem = f"{modality} vectors stored twice under one id"
            return None
        missing = np.setdiff1d(live, ids)
        if len(missing) and items_check is not None:
            items_check.problem = f"{len(missing)} {modality} items have no stored vector"
            return None
        if not np.isfinite(vectors).all():
            for r in parts:
                checks[r].problem = "vectors that are not finite numbers"
            return None
        keep = np.isin(ids, live)
        order = np.argsort(ids[keep], kind="stable")
        ids, vectors = ids[keep][order], vectors[keep][order]
    index_role = segment_role(segment.id, f"faiss/{modality}")
    if index_role not in m.files and len(live):
        verdict.checks.append(
            Check(index_role, index_role, f"missing, though {len(live)} items need it")
        )
    if vectors is None:
        return None
    index = loaded.get(index_role)
    if index is not None:
        ever = every.column("item_id").to_numpy()[
            np.asarray(every.column("modality").to_pylist(), dtype=object) == modality
        ]
        problem = _index_problem(index, live, vectors, ever)
        if problem:
            checks[index_role].problem = problem
    return ids, vectors


def _check_reference(verdict: Verdict, checks, modality: str, stored: list) -> None:
    m, loaded = verdict.manifest, verdict.loaded
    live = verdict.live[modality]
    if f"reference/{modality}" not in m.files and len(live):  # written before samples were
        role = f"reference/{modality}"
        note = "not kept (computed at query time): `xsearch index rebuild` adds it"
        verdict.checks.append(Check(role, role, note=note))
    sample = loaded.get(f"reference/{modality}")
    if sample is None:
        return
    width = verdict.widths[modality]
    stored = [s for s in stored if len(s[0])]
    ids = np.concatenate([s[0] for s in stored]) if stored else np.empty(0, np.int64)
    vectors = (
        np.concatenate([s[1].reshape(len(s[0]), -1) for s in stored])
        if stored
        else np.empty((0, width), np.float32)
    )
    got_ids, got_vectors = tables.embeddings_arrays(sample)
    want_ids, want_vectors = bottom_k(ids, vectors.reshape(len(ids), -1))
    if not (np.array_equal(got_ids, want_ids) and np.array_equal(got_vectors, want_vectors)):
        checks[f"reference/{modality}"].problem = "differs from the sample of the stored embeddings"


def _width(table: pa.Table) -> int | None:
    kind = table.schema.field("embedding").type if "embedding" in table.column_names else None
    return getattr(kind, "list_size", None)


def concat_embeddings(loaded: dict, parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the embeddings tables `loaded` holds for the roles `parts`."""
    if not parts:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    return tables.embeddings_arrays(pa.concat_tables([loaded[r] for r in parts]))


def _index_problem(
    index, live: np.ndarray, vectors: np.ndarray, ever: np.ndarray | None = None
) -> str | None:
    """Whether a segment's FAISS index holds every live item, with its stored vectors, and
    nothing but the segment's items (`ever`: deleted ones included, which it may keep)."""
    import faiss

    outer = faiss.downcast_index(index)
    if not isinstance(outer, faiss.IndexIDMap):
        return f"not an id-mapped index ({type(outer).__name__})"
    ids = np.sort(faiss.vector_to_array(outer.id_map))
    ever = live if ever is None else ever
    if (
        len(np.setdiff1d(live, ids))
        or len(np.setdiff1d(ids, ever))
        or len(np.unique(ids)) < len(ids)
    ):
        return f"holds {index.ntotal} vectors, not the {len(live)} items of its modality"
    if len(live) and index.d != vectors.shape[1]:
        return f"dimension {index.d}, the stored vectors have {vectors.shape[1]}"
    if len(live) and stores_vectors_exactly(index):
        pick = np.linspace(0, len(live) - 1, min(len(live), _SAMPLE)).astype(np.int64)
        if not np.array_equal(index.reconstruct_batch(live[pick]), vectors[pick]):
            return "its vectors differ from the stored embeddings"
    return None


def stores_vectors_exactly(index) -> bool:
    """Whether the index stores the vectors themselves (they can be read back exactly)."""
    import faiss

    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    return type(inner) in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2)


def _lock_check(directory: Path) -> Check:
    """The writer lock is an advisory lock: its content does not matter, only who holds it.
    Looked up in /proc/locks, so that checking never takes it from a writer."""
    import os

    path = directory / LOCK
    check = Check(LOCK, "lock")
    try:
        st = path.stat()
    except FileNotFoundError:
        check.note = "absent (the next writer creates it)"
        return check
    if not path.is_file():
        check.problem = "not a regular file: remove it"
        return check
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return check
    for line in locks:
        fields = line.split()
        if "FLOCK" in fields and device in fields:
            holder = fields[fields.index(device) - 1]
            if holder != str(os.getpid()):  # not the repair holding it
                check.note = f"held by process {holder}: an ingest is writing a new generation"
    return check
