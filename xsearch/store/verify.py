"""`xsearch verify`: check every file of an index, and repair what can be repaired.

What a store keeps, and what can be recovered when it is damaged:
- `manifest.json` names the files of the published generation. A copy of each published
  manifest is kept as `data/manifest-gN.json` (see manifest.py): a lost or damaged manifest is
  restored from the newest intact copy.
- assets, items and embeddings (Parquet) are the source of truth. A damaged embeddings file
  is re-created from the FAISS index of its modality when that index stores vectors exactly
  (Flat, HNSW-Flat); damaged assets or items cannot be re-created: the previous generation is
  restored instead when its files are still there and intact (the previous generation's files
  outlive one commit), and the files that the lost generation added must be ingested again.
- the list of failed files only saves retrying them: a damaged list is reset.
- FAISS indexes and reference samples are derived from the embeddings: rebuilt.

A repair holds the writer lock while it publishes a restored manifest, then rebuilds the
derived files with `rebuild_indexes`, which takes the lock again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from xsearch.errors import UsageError
from xsearch.store import tables
from xsearch.store.manifest import (
    COPY,
    MANIFEST,
    FileEntry,
    Manifest,
    StoreCorrupt,
    file_problem,
    manifest_copies,
    publish,
    read_manifest,
)
from xsearch.store.reference import bottom_k
from xsearch.store.store import DATA, LOCK

SOURCE = ("assets", "items")  # with embeddings/*: what nothing else can re-create
_GEN = re.compile(r"-g(\d+)")
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

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def generation(self) -> int | None:
        return self.manifest.generation if self.manifest else None

    def bad(self) -> dict[str, Check]:
        return {c.role: c for c in self.checks if not c.ok}


@dataclass
class Repair:
    """What `repair_index` found, did, and could not save."""

    before: Verdict
    after: Verdict
    actions: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # what is gone and must be ingested again
    lost_items: int = 0

    @property
    def healthy(self) -> bool:
        return self.after.healthy


def kind_of_role(role: str) -> str:
    """source (only re-ingesting re-creates it), failures, derived, or manifest."""
    if role in SOURCE or role.startswith("embeddings/"):
        return "source"
    if role.startswith(("faiss/", "ivfdata/", "reference/")):
        return "derived"
    return role


# --- verify ----------------------------------------------------------------------------------


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
    checks = {role: Check(entry.path, role) for role, entry in sorted(m.files.items())}
    for role, check in checks.items():
        check.problem = file_problem(directory / check.file, m.files[role])
    for role, check in checks.items():
        if check.ok and not role.startswith("ivfdata/"):  # on-disk lists: with their index
            _read(verdict, check, checks.get(f"ivfdata/{role.removeprefix('faiss/')}"))
    verdict.checks += checks.values()
    _check_consistency(verdict)
    verdict.checks.append(_lock_check(directory))
    used = {e.path for e in m.files.values()}
    stray = []
    for path in sorted((directory / DATA).glob("*")):
        match = _GEN.search(path.name)
        gen = int(match.group(1)) if match else -1
        kept = COPY.fullmatch(path.name) or gen == m.generation - 1  # outlive one commit
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
    if unknown:
        checks["items"].problem = f"items of unknown modality {unknown[0]!r}"
    if assets is not None:
        orphans = ~np.isin(items.column("asset_id").to_numpy(), assets.column("asset_id"))
        if orphans.any():
            checks["items"].problem = f"{int(orphans.sum())} items belong to no asset"
    for modality in tables.MODALITIES:
        verdict.live[modality] = np.sort(ids[modalities == modality])
        _check_modality(verdict, checks, modality)


def _check_modality(verdict: Verdict, checks: dict[str, Check], modality: str) -> None:
    m, loaded, live = verdict.manifest, verdict.loaded, verdict.live[modality]
    parts = sorted(r for r in m.files if r.startswith(f"embeddings/{modality}/"))
    vectors = None
    if all(checks[r].ok for r in parts):
        ids, vectors = _embeddings(loaded, parts)
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


def _embeddings(loaded: dict, parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
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
    if len(live) and _exact(index):
        pick = np.linspace(0, len(live) - 1, min(len(live), _SAMPLE)).astype(np.int64)
        if not np.array_equal(index.reconstruct_batch(live[pick]), vectors[pick]):
            return "its vectors differ from the stored embeddings"
    return None


def _exact(index) -> bool:
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


# --- repair ----------------------------------------------------------------------------------


@dataclass
class _Plan:
    base: Verdict  # the generation whose source files are used
    files: dict[str, FileEntry]  # its files, with what the repair re-created
    actions: list[str]
    rebuild: bool  # whether derived files must be rebuilt


def repair_index(directory: Path) -> Repair:
    """Bring the index back to a healthy generation (see the module's docstring). Raises
    IndexLocked while an ingest writes it; returns what was done and what was lost."""
    from xsearch.store.lock import WriterLock
    from xsearch.store.rebuild import rebuild_indexes

    before = verify_index(directory)
    if before.healthy:
        return Repair(before, before, ["nothing to repair"])
    with WriterLock(directory / LOCK):
        before = verify_index(directory)  # again, now that no writer can change it
        if before.healthy:
            return Repair(before, before, ["nothing to repair"])
        report = Repair(before, before)
        gen = _newest_generation(directory, before) + 1
        plan, newest = None, None
        for candidate in _candidates(directory, before):
            newest = newest or candidate
            plan = _plan(candidate, gen)
            if plan is not None:
                break
        if plan is None:
            _unrepairable(report, newest)
            return report
        _describe_restore(report, before, newest, plan.base, gen)
        report.actions += plan.actions
        if plan.base is not before or plan.files != before.manifest.files:
            base = plan.base.manifest
            ids = [m for m in (base, before.manifest, newest.manifest) if m is not None]
            publish(
                directory,
                replace(
                    base,
                    generation=gen,
                    files=plan.files,
                    next_item_id=max(m.next_item_id for m in ids),
                    next_asset_id=max(m.next_asset_id for m in ids),
                ),
            )
    if plan.rebuild:
        factory, note = _factory(plan.base)
        on_disk = factory != "Flat" and any(r.startswith("ivfdata/") for r in plan.files)
        store = rebuild_indexes(directory, factory, on_disk=on_disk)
        report.actions.append(
            f"rebuilt the FAISS indexes ({factory}{', on disk' if on_disk else ''}{note}) and "
            f"reference samples from the stored embeddings: generation {store.generation}"
        )
    report.after = verify_index(directory)
    return report


def _newest_generation(directory: Path, verdict: Verdict) -> int:
    gens = [verdict.generation or 0, *manifest_copies(directory)]
    for path in (directory / DATA).glob("*"):
        match = _GEN.search(path.name)
        if match:
            gens.append(int(match.group(1)))
    return max(gens)


def _candidates(directory: Path, current: Verdict):
    """The generations a repair may start from, newest first: the published one, then the
    kept copies of older (or, when the manifest is lost, the same) generations."""
    if current.manifest is not None:
        yield current
    for gen, path in sorted(manifest_copies(directory).items(), reverse=True):
        if current.manifest is not None and gen >= current.manifest.generation:
            continue
        try:
            manifest = Manifest.from_json(path.read_bytes(), path)
        except (StoreCorrupt, OSError):
            continue
        yield verify_index(directory, manifest)


def _plan(verdict: Verdict, gen: int) -> _Plan | None:
    """The files of a repaired generation `gen` based on `verdict`'s, or None when a source
    file of it is damaged beyond recovery."""
    files = dict(verdict.manifest.files)
    actions: list[str] = []
    bad = verdict.bad()
    bad.pop("manifest", None)
    bad.pop("lock", None)
    if any(role in SOURCE for role in bad):
        return None
    for modality in tables.MODALITIES:
        parts = [r for r in bad if r.startswith(f"embeddings/{modality}/")]
        if parts and not _recover_embeddings(verdict, files, modality, parts, gen, actions):
            return None
    if "failures" in bad:
        path = verdict.directory / DATA / f"failures-g{gen}.parquet"
        tables.write_parquet(tables.FAILURES.empty_table(), path)
        files["failures"] = _entry(verdict.directory, path)
        actions.append(
            f"{verdict.manifest.files['failures'].path} ({bad['failures'].problem}): the list "
            "of failed files was reset; the next ingest tries those files again"
        )
    derived = [r for r in bad if kind_of_role(r) == "derived"]
    rebuild = False
    for role in derived:
        modality = role.split("/", 1)[1]
        if len(verdict.live.get(modality, ())) == 0 and role in files:
            files.pop(role)  # a modality without items needs no index (rebuild skips it)
            actions.append(f"dropped {role}: damaged, and its modality has no items")
        else:
            rebuild = True
    return _Plan(verdict, files, actions, rebuild)


def _recover_embeddings(verdict, files, modality, parts, gen, actions) -> bool:
    """Re-create what the damaged embeddings files of `modality` held for live items, from
    its FAISS index when that stores the vectors exactly and holds every live item."""
    import faiss

    live = verdict.live.get(modality)
    if live is None:  # the items are unreadable: nothing tells which vectors are needed
        return False
    intact = [r for r in files if r.startswith(f"embeddings/{modality}/") and r not in parts]
    need = np.setdiff1d(live, _embeddings(verdict.loaded, intact)[0])
    damaged = ", ".join(verdict.manifest.files[r].path for r in parts)
    for role in parts:
        files.pop(role)
    if not len(need):
        actions.append(f"{damaged}: held no vector of a live item, dropped")
        return True
    index = verdict.loaded.get(f"faiss/{modality}")
    if index is None or f"faiss/{modality}" in verdict.bad() or not _exact(index):
        return False
    held = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    if not np.isin(need, held).all():
        return False
    path = verdict.directory / DATA / f"emb-{modality}-g{gen}.parquet"
    tables.write_parquet(tables.embeddings_table(need, index.reconstruct_batch(need)), path)
    files[parts[0]] = _entry(verdict.directory, path)
    actions.append(
        f"{damaged}: re-created the {len(need)} {modality} vectors it held from the FAISS "
        "index, which stores them exactly"
    )
    return True


def _entry(directory: Path, path: Path) -> FileEntry:
    from xsearch.store.fsutil import fsync_dir, sha256_file

    fsync_dir(path.parent)
    return FileEntry(str(path.relative_to(directory)), sha256_file(path), path.stat().st_size)


def _describe_restore(
    report: Repair, before: Verdict, newest: Verdict, base: Verdict, gen: int
) -> None:
    """Say which generation the repair starts from, and what that loses."""
    b, n = base.manifest, newest.manifest
    if before.manifest is None:
        report.actions.append(
            f"{MANIFEST} ({before.checks[0].problem}): restored from "
            f"data/manifest-g{b.generation}.json, as generation {gen}"
        )
    if base is newest:
        return
    damaged = "; ".join(
        f"{c.file}: {c.problem}" for c in newest.checks if not c.ok and kind_of_role(c.role)
        == "source"
    )  # fmt: skip
    report.actions.append(
        f"restored generation {b.generation} as generation {gen}, since generation "
        f"{n.generation} lost source data ({damaged})"
    )
    items = newest.loaded.get("items")
    if items is not None and base.loaded.get("items") is not None:
        old = base.loaded["items"].column("item_id").to_numpy()
        report.lost_items = int((~np.isin(items.column("item_id").to_numpy(), old)).sum())
        count = f"{report.lost_items} items"
    else:
        report.lost_items = max(0, n.next_item_id - b.next_item_id)
        count = f"up to {report.lost_items} items"
    added = _added_files(newest, base)
    what = f"the files added or changed in generation {n.generation}"
    if added:
        shown = ", ".join(added[:5]) + (", ..." if len(added) > 5 else "")
        files = f"{len(added)} file{'s' if len(added) > 1 else ''}"
        what = f"{files} added or changed in generation {n.generation} ({shown})"
    report.lost.append(
        f"{count} lost: {what} must be ingested again (run the same `xsearch ingest`)"
    )


def _added_files(current: Verdict, base: Verdict) -> list[str] | None:
    """Paths of the assets `current` has and `base` has not, when both lists are readable."""
    new, old = current.loaded.get("assets"), base.loaded.get("assets")
    if new is None or old is None:
        return None
    known = set(old.column("content_hash").to_pylist())
    return sorted(r["path"] for r in new.to_pylist() if r["content_hash"] not in known)


def _unrepairable(report: Repair, newest: Verdict | None) -> None:
    checks = newest.checks if newest is not None else report.before.checks
    damaged = [
        f"{c.file} ({c.problem})"
        for c in checks
        if not c.ok and kind_of_role(c.role) in ("source", "manifest")
    ]
    if newest is None and report.before.checks[0].ok is False:
        damaged = [f"{MANIFEST} ({report.before.checks[0].problem}), and no copy is kept"]
    items = newest.loaded.get("items") if newest is not None else None
    report.lost_items = items.num_rows if items is not None else 0
    report.lost.append(
        f"cannot repair: {', '.join(damaged)}: source data that nothing else holds, and no "
        f"earlier generation is intact; move {report.before.directory} away and ingest the "
        "media again"
    )


def _factory(verdict: Verdict) -> tuple[str, str]:
    """The index factory of the generation's sound FAISS index files, else Flat. An index
    file whose on-disk lists are damaged still tells its type."""
    import faiss
    from faiss.contrib.factory_tools import reverse_index_factory

    from xsearch.indexes.safety import load_guarded

    bad = verdict.bad()
    flags = faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY
    for check in verdict.checks:
        if not check.role.startswith("faiss/") or check.role in bad:
            continue
        index = verdict.loaded.get(check.role)
        try:
            if index is None:  # its lists are damaged: read the index file alone
                path = verdict.directory / check.file
                index = load_guarded(path, lambda p=path: faiss.read_index(str(p), flags))
            return reverse_index_factory(faiss.downcast_index(index.index)), ""
        except Exception:
            continue
    return "Flat", "; no sound index told the type: `xsearch index rebuild --factory` changes it"
