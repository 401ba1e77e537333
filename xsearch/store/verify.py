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
    if role in SOURCE or role.startswith("embeddings/"):
        return "source"
    if role.startswith(("faiss/", "ivfdata/", "reference/")):
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
        if check.ok and not role.startswith("ivfdata/"):  # on-disk lists: with their index
            _read(verdict, check, checks.get(f"ivfdata/{role.removeprefix('faiss/')}"))
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
    try:
        if check.role.startswith("faiss/"):
            if lists is not None and not lists.ok:
                return  # the index cannot be read without its lists: their check says why
            lists_path = verdict.directory / lists.file if lists is not None else None
            verdict.loaded[check.role] = _load_faiss(path, lists_path)
        else:
            schema = {"assets": tables.ASSETS, "items": tables.ITEMS}.get(check.role)
            schema = tables.FAILURES if check.role == "failures" else schema
            verdict.loaded[check.role] = tables.read_parquet(path, schema)
    except Exception as e:  # the checksum matched: the manifest itself was forged or stale
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        check.problem = f"unreadable despite a matching checksum ({reason})"


def _load_faiss(path: Path, lists: Path | None):
    from xsearch.indexes.faiss_index import read
    from xsearch.indexes.safety import load_guarded

    return load_guarded(path, lambda: read(path, lists))


def _check_consistency(verdict: Verdict) -> None:
    """What the individually sound files say about each other."""
    m, loaded = verdict.manifest, verdict.loaded
    checks = {c.role: c for c in verdict.checks}
    assets, items = loaded.get("assets"), loaded.get("items")
    if assets is not None:
        ids = assets.column("asset_id").to_numpy()
        if len(np.unique(ids)) != len(ids):
            checks["assets"].problem = "duplicate asset ids"
        elif len(ids) and ids.max() >= m.next_asset_id:
            checks["assets"].problem = "asset ids beyond the manifest's next id"
    if items is None:
        return
    ids = items.column("item_id").to_numpy()
    modalities = np.array(items.column("modality").to_pylist(), dtype=object)
    if len(np.unique(ids)) != len(ids):
        checks["items"].problem = "duplicate item ids"
        return
    if len(ids) and ids.max() >= m.next_item_id:
        checks["items"].problem = "item ids beyond the manifest's next id"
    unknown = sorted(set(modalities) - set(tables.MODALITIES))
    foreign = sorted(set(modalities) - set(verdict.widths))
    if unknown:
        checks["items"].problem = f"items of unknown modality {unknown[0]!r}"
    elif foreign:
        checks["items"].problem = f"items of modality {foreign[0]!r}, which the index does not hold"
    if assets is not None:
        orphans = ~np.isin(items.column("asset_id").to_numpy(), assets.column("asset_id"))
        if orphans.any():
            checks["items"].problem = f"{int(orphans.sum())} items belong to no asset"
    for modality in verdict.widths:
        verdict.live[modality] = np.sort(ids[modalities == modality])
        _check_modality(verdict, checks, modality)


def _check_modality(verdict: Verdict, checks: dict[str, Check], modality: str) -> None:
    m, loaded, live = verdict.manifest, verdict.loaded, verdict.live[modality]
    parts = sorted(r for r in m.files if r.startswith(f"embeddings/{modality}/"))
    vectors = None
    width = verdict.widths[modality]
    for role in parts:
        if checks[role].ok and (got := _width(loaded[role])) != width:
            checks[
                role
            ].problem = f"vectors of width {got}; the index's {modality} width is {width}"
    if all(checks[r].ok for r in parts):
        ids, vectors = concat_embeddings(loaded, parts)
        if len(np.unique(ids)) != len(ids):
            for r in parts:
                checks[r].problem = f"{modality} vectors stored twice under one id"
            return
        missing = np.setdiff1d(live, ids)
        if len(missing):
            checks["items"].problem = f"{len(missing)} {modality} items have no stored vector"
            return
        if not np.isfinite(vectors).all():
            for r in parts:
                checks[r].problem = "vectors that are not finite numbers"
            return
        keep = np.isin(ids, live)
        order = np.argsort(ids[keep], kind="stable")
        ids, vectors = ids[keep][order], vectors[keep][order]
    if f"faiss/{modality}" not in m.files and len(live):
        role = f"faiss/{modality}"
        verdict.checks.append(Check(role, role, f"missing, though {len(live)} items need it"))
    if f"reference/{modality}" not in m.files and len(live):  # written before samples were
        role = f"reference/{modality}"
        note = "not kept (computed at query time): `xsearch index rebuild` adds it"
        verdict.checks.append(Check(role, role, note=note))
    if vectors is None:
        return
    index = loaded.get(f"faiss/{modality}")
    if index is not None:
        problem = _index_problem(index, live, vectors)
        if problem:
            checks[f"faiss/{modality}"].problem = problem
    sample = loaded.get(f"reference/{modality}")
    if sample is not None:
        got_ids, got_vectors = tables.embeddings_arrays(sample)
        want_ids, want_vectors = bottom_k(ids, vectors.reshape(len(ids), -1))
        if not (np.array_equal(got_ids, want_ids) and np.array_equal(got_vectors, want_vectors)):
            checks[
                f"reference/{modality}"
            ].problem = "differs from the sample of the stored embeddings"


def _width(table: pa.Table) -> int | None:
    kind = table.schema.field("embedding").type if "embedding" in table.column_names else None
    return getattr(kind, "list_size", None)


def concat_embeddings(loaded: dict, parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the embeddings tables `loaded` holds for the roles `parts`."""
    if not parts:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    return tables.embeddings_arrays(pa.concat_tables([loaded[r] for r in parts]))


def _index_problem(index, live: np.ndarray, vectors: np.ndarray) -> str | None:
    """Whether a FAISS index holds exactly the live items, with their stored vectors."""
    import faiss

    outer = faiss.downcast_index(index)
    if not isinstance(outer, faiss.IndexIDMap):
        return f"not an id-mapped index ({type(outer).__name__})"
    ids = np.sort(faiss.vector_to_array(outer.id_map))
    if index.ntotal != len(live) or not np.array_equal(ids, live):
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
