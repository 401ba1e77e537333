"""`xsearch verify --repair`: bring a damaged index back to a healthy generation.

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

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from xsearch.store import tables
from xsearch.store.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    StoreCorrupt,
    manifest_copies,
    publish,
)
from xsearch.store.names import generation_file, generation_of, manifest_copy
from xsearch.store.segments import local_role, segment_role
from xsearch.store.store import DATA, LOCK
from xsearch.store.verify import (
    SOURCE,
    Verdict,
    concat_embeddings,
    kind_of_role,
    stores_vectors_exactly,
    verify_index,
)


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
        on_disk = factory != "Flat" and any("ivfdata/" in r for r in plan.files)
        store = rebuild_indexes(directory, factory, on_disk=on_disk)
        report.actions.append(
            f"rebuilt the FAISS indexes ({factory}{', on disk' if on_disk else ''}{note}) and "
            f"reference samples from the stored embeddings: generation {store.generation}"
        )
    report.after = verify_index(directory)
    return report


def _newest_generation(directory: Path, verdict: Verdict) -> int:
    gens = [verdict.generation, *manifest_copies(directory)]
    found = (generation_of(path.name) for path in (directory / DATA).glob("*"))
    return max([*gens, *(gen for gen in found if gen is not None)])


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
    if any(local_role(role) in (*SOURCE, "deleted") for role in bad):
        return None
    for modality in verdict.widths:
        for segment in verdict.manifest.segments:
            prefix = segment_role(segment.id, f"embeddings/{modality}")
            parts = [r for r in bad if r == prefix or r.startswith(prefix + "/")]
            if parts and not _recover_embeddings(
                verdict, files, segment.id, modality, parts, gen, actions
            ):
                return None
    if "failures" in bad:
        path = verdict.directory / DATA / generation_file("failures", gen, "parquet")
        tables.write_parquet(tables.FAILURES.empty_table(), path)
        files["failures"] = _entry(verdict.directory, path)
        actions.append(
            f"{verdict.manifest.files['failures'].path} ({bad['failures'].problem}): the list "
            "of failed files was reset; the next ingest tries those files again"
        )
    derived = [r for r in bad if kind_of_role(r) == "derived"]
    rebuild = False
    for role in derived:
        modality = local_role(role).split("/", 1)[1]
        if len(verdict.live.get(modality, ())) == 0 and role in files:
            files.pop(role)  # a modality without items needs no index (rebuild skips it)
            actions.append(f"dropped {role}: damaged, and its modality has no items")
        else:
            rebuild = True
    return _Plan(verdict, files, actions, rebuild)


def _recover_embeddings(verdict, files, segment_id, modality, parts, gen, actions) -> bool:
    """Re-create what the damaged embeddings files of a segment's `modality` held for live
    items, from its FAISS index when that stores the vectors exactly and holds them all."""
    import faiss

    rows = verdict.segment_items.get(segment_id)
    if modality not in verdict.live or rows is None:
        return False  # the items are unreadable: nothing tells which vectors are needed
    items = rows[1]
    of_modality = np.asarray(items.column("modality").to_pylist(), dtype=object) == modality
    live = items.column("item_id").to_numpy()[of_modality]
    prefix = segment_role(segment_id, f"embeddings/{modality}")
    intact = [r for r in files if r.startswith(prefix) and r not in parts]
    need = np.setdiff1d(live, concat_embeddings(verdict.loaded, intact)[0])
    damaged = ", ".join(verdict.manifest.files[r].path for r in parts)
    for role in parts:
        files.pop(role)
    if not len(need):
        actions.append(f"{damaged}: held no vector of a live item, dropped")
        return True
    index_role = segment_role(segment_id, f"faiss/{modality}")
    index = verdict.loaded.get(index_role)
    if index is None or index_role in verdict.bad() or not stores_vectors_exactly(index):
        return False
    held = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    if not np.isin(need, held).all():
        return False
    path = verdict.directory / DATA / generation_file(f"emb-{modality}", gen, "parquet")
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
            f"{DATA}/{manifest_copy(b.generation)}, as generation {gen}"
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
        if not local_role(check.role).startswith(("faiss/", "trained/")) or check.role in bad:
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
