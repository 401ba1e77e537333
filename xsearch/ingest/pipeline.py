"""`xsearch ingest`: files -> decoded items (worker processes) -> embeddings -> one commit.

Stages: plan (what is new, renamed, changed, gone, by size/mtime and content hash) -> decode
(worker processes, each file with a time and memory limit) -> embed (batched, in this
process, overlapping the workers' decoding) -> commit (one atomic generation, plus periodic
commits on long runs so that a crash loses little work).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from xsearch.ingest.identity import content_hash, model_identity
from xsearch.ingest.scan import folder_label, sidecar_texts
from xsearch.ingest.workers import DecodePool
from xsearch.media import kind_of
from xsearch.store.store import Changes, Store, Writer


class Annotation(NamedTuple):
    """Labels and texts given by the caller for one file (a dataset's metadata)."""

    labels: Sequence[str]
    texts: Sequence[str] = ()


@dataclass
class IngestOptions:
    window_seconds: float = 10.0
    workers: int = 2
    timeout: float = 60.0  # seconds of decoding per file
    memory_mb: int = 2048  # per decode worker
    labels_from_folder: bool = False
    prune: bool = False  # remove assets whose files are gone
    commit_every: int = 500  # files; a long run publishes its progress this often
    # str(path), as given in `files` -> its Annotation. An annotated file takes its labels and
    # texts from here, not from sidecars or its folder, so that a dataset's labels are exact.
    # Only files that are (re)embedded read it: a new annotation on an unchanged file is not
    # applied (xsearch.eval builds a fresh index instead).
    annotations: Mapping[str, Annotation] | None = None


@dataclass
class IngestReport:
    files: int = 0
    added: int = 0
    unchanged: int = 0
    renamed: int = 0
    changed: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)  # new items per modality
    generation: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0  # time this process waited for decoded files
    embed_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()} | {
            "failed": [{"path": p, "reason": r} for p, r in self.failed]
        }


@dataclass
class _Plan:
    to_decode: list[Path] = field(default_factory=list)
    hashes: dict[Path, str] = field(default_factory=dict)
    replaced: dict[Path, int] = field(default_factory=dict)  # changed file -> old asset id
    still_failing: list[dict] = field(default_factory=list)  # failed before, unchanged since


def _plan(files: list[Path], store: Store, changes: Changes, report: IngestReport) -> _Plan:
    """Sort files into unchanged, renamed, changed and new, hashing only when needed."""
    assets = store.assets.to_pylist()
    by_path = {a["path"]: a for a in assets}
    by_hash = {a["content_hash"]: a for a in assets}
    failed_before = {(f["path"], f["bytes"], f["mtime"]): f for f in store.failures.to_pylist()}
    plan = _Plan()
    for path in files:
        st = path.stat()
        known = by_path.get(str(path))
        if known and known["bytes"] == st.st_size and known["mtime"] == st.st_mtime:
            report.unchanged += 1
            continue
        failure = failed_before.get((str(path), st.st_size, st.st_mtime))
        if failure:  # not retried until the file changes
            plan.still_failing.append(failure)
            report.failed.append((str(path), failure["reason"]))
            continue
        digest = content_hash(path)
        if known and known["content_hash"] == digest:
            report.unchanged += 1  # touched, same bytes
            continue
        twin = by_hash.get(digest)
        if twin and not Path(twin["path"]).exists():
            changes.renamed[twin["asset_id"]] = str(path)
            report.renamed += 1
            continue
        if twin:
            report.unchanged += 1  # the same content is indexed under another path
            continue
        if known:
            plan.replaced[path] = known["asset_id"]
        plan.hashes[path] = digest
        plan.to_decode.append(path)
    return plan


class _Batcher:
    """Collects decoded items and embeds them a batch at a time."""

    def __init__(self, encoder, writer: Writer, changes: Changes, report: IngestReport):
        self.encoder, self.writer, self.changes, self.report = encoder, writer, changes, report
        self.pending: dict[str, list[tuple[dict, object]]] = {"image": [], "audio": [], "text": []}

    def add(self, modality: str, item: dict, payload: object) -> None:
        self.pending[modality].append((item, payload))
        if len(self.pending[modality]) >= self.encoder.batch_size:
            self.flush(modality)

    def flush(self, modality: str | None = None) -> None:
        for m in [modality] if modality else list(self.pending):
            batch, self.pending[m] = self.pending[m], []
            if not batch:
                continue
            t0 = time.perf_counter()
            payloads = [p for _, p in batch]
            if m == "image":
                vectors = self.encoder.embed_images(payloads)
            elif m == "audio":
                vectors = self.encoder.embed_audio(payloads)
            else:
                vectors = self.encoder.embed_text(payloads)
            self.report.embed_seconds += time.perf_counter() - t0
            ids = self.writer.allocate_items(len(batch))
            for item_id, (item, _) in zip(ids, batch):
                item["item_id"] = int(item_id)
                self.changes.new_items.append(item)
            self.changes.add_vectors(m, ids, vectors)
            self.report.items[m] = self.report.items.get(m, 0) + len(batch)


def ingest(
    files: Iterable[Path],
    index_dir: Path,
    encoder,
    options: IngestOptions | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_file: Callable[[Path, str, int], None] | None = None,
) -> IngestReport:
    """Bring the index at `index_dir` up to date with `files`; returns what was done.
    `on_plan(n)` is told how many files need decoding; `on_file(path, status, items)` hears
    each file's result with the number of items embedded so far."""
    options = options or IngestOptions()
    report = IngestReport()
    start = time.perf_counter()
    files = list(files)
    report.files = len(files)
    with Writer(index_dir, model_identity(encoder)) as writer:
        changes = Changes()
        plan = _plan(files, writer.store, changes, report)
        batcher = _Batcher(encoder, writer, changes, report)
        if on_plan:
            on_plan(len(plan.to_decode))
        new_failures: list[dict] = []
        done_since_commit = 0
        size = encoder.config.vision.image_size
        with DecodePool(
            options.workers,
            timeout=options.timeout,
            memory_mb=options.memory_mb,
            window_seconds=options.window_seconds,
            image_size=size,
            sample_rate=encoder.sample_rate,
        ) as pool:
            waited = time.perf_counter()
            for path, decoded, reason in pool.imap([str(p) for p in plan.to_decode]):
                report.decode_seconds += time.perf_counter() - waited
                path = Path(path)
                st = path.stat() if path.exists() else None
                if decoded is None:
                    reason = reason.removeprefix(f"{path}: ")
                    report.failed.append((str(path), reason))
                    new_failures.append(
                        {
                            "path": str(path),
                            "reason": reason,
                            "bytes": st.st_size if st else -1,
                            "mtime": st.st_mtime if st else -1.0,
                        }
                    )
                else:
                    _add_asset(path, decoded, plan, writer, changes, batcher, options, st)
                    if path in plan.replaced:
                        changes.removed_assets.add(plan.replaced[path])
                        report.changed += 1
                    else:
                        report.added += 1
                if on_file:
                    on_file(path, reason or "ok", sum(report.items.values()))
                done_since_commit += 1
                if done_since_commit >= options.commit_every:
                    batcher.flush()
                    writer.commit(changes)
                    changes = batcher.changes = Changes()
                    done_since_commit = 0
                waited = time.perf_counter()
        batcher.flush()
        if options.prune:
            present = {str(p) for p in files}
            for asset in writer.store.assets.to_pylist():
                gone = asset["path"] not in present and not Path(asset["path"]).exists()
                if gone and asset["asset_id"] not in changes.renamed:
                    changes.removed_assets.add(asset["asset_id"])
                    report.removed += 1
        seen = {str(p) for p in files}
        elsewhere = [f for f in writer.store.failures.to_pylist() if f["path"] not in seen]
        failures = elsewhere + plan.still_failing + new_failures
        if failures != writer.store.failures.to_pylist():
            changes.failures = failures
        store = writer.store if changes.empty() else writer.commit(changes)
        report.generation = store.generation
    report.seconds = time.perf_counter() - start
    return report


def _add_asset(path, decoded, plan, writer, changes, batcher, options, st) -> None:
    asset_id = writer.allocate_asset()
    annotation = options.annotations.get(str(path)) if options.annotations else None
    if annotation is not None:
        labels, texts = list(annotation[0]), list(annotation[1])
    else:
        texts, labels = sidecar_texts(path)
        if options.labels_from_folder:
            labels = [*labels, folder_label(path)]
    changes.new_assets.append(
        {
            "asset_id": asset_id,
            "path": str(path),
            "content_hash": plan.hashes[path],
            "kind": kind_of(path),
            "bytes": st.st_size,
            "mtime": st.st_mtime,
            "duration": decoded.duration,
            "labels": labels,
        }
    )
    if decoded.image is not None:
        item = _item(asset_id, "image", decoded.frame_time, decoded.frame_time)
        batcher.add("image", item, Image.fromarray(decoded.image))
    for start, end, wave in decoded.audio:
        batcher.add("audio", _item(asset_id, "audio", start, end), np.asarray(wave))
    for text in texts:
        batcher.add("text", _item(asset_id, "text", None, None, text), text)


def _item(asset_id: int, modality: str, start, end, text: str | None = None) -> dict:
    return {"asset_id": asset_id, "modality": modality, "start": start, "end": end, "text": text}
