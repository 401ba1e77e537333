"""`xsearch ingest`: files -> decoded items (worker processes) -> embeddings -> one commit.

Stages: plan (what is new, renamed, changed, gone, by size/mtime and content hash) -> decode
(worker processes, each file with a time and memory limit) -> embed (batched, in this
process, overlapping the workers' decoding) -> commit (one atomic generation, plus periodic
commits on long runs so that a crash loses little work).

Where decode and embed run is a `Backend`: `LocalBackend` (the default: this machine's decode
workers, the model in this process), or `xsearch.ingest.ray_backend.RayBackend` (a Ray
cluster). Planning, ids, sidecars and labels, and every commit stay here, whatever the backend.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from xsearch.errors import UsageError
from xsearch.ingest.identity import content_hash, model_identity
from xsearch.ingest.interrupt import GracefulStop, StopRequested
from xsearch.ingest.scan import folder_label, sidecar_texts
from xsearch.ingest.spill import discard, spill_folder
from xsearch.ingest.workers import DecodePool
from xsearch.media.frames import FramePolicy
from xsearch.media.kinds import kind_of
from xsearch.store.store import Changes, Store, Writer

if TYPE_CHECKING:
    from xsearch.ingest.decode import Decoded
    from xsearch.models.spec import Encoder, EncoderSpec

# A long ingest spends at most about this share of its time in periodic commits: while a
# commit rewrites the whole store (a large index), they come less often than commit_seconds.
MOST_TIME_IN_COMMITS = 0.1
# A decode running this long is a long file's: the model leaves its core to it (see
# _InProcessEmbedder).
LONG_DECODE_SECONDS = 5.0
# The modalities a file of each kind can give (besides the texts of its sidecars).
_KIND_MODALITIES = {"image": ("image",), "audio": ("audio",), "video": ("image", "audio")}


class Annotation(NamedTuple):
    """Labels and texts given by the caller for one file (a dataset's metadata)."""

    labels: Sequence[str]
    texts: Sequence[str] = ()


@dataclass
class IngestOptions:
    # seconds per audio window; None: the model's clip length (10 s for AudioCLIP, which
    # takes any length), so that each window is one clip the model sees whole
    window_seconds: float | None = None
    workers: int = 2
    timeout: float = 60.0  # seconds of decoding per file
    memory_mb: int = 2048  # per decode worker
    labels_from_folder: bool = False
    prune: bool = False  # remove assets whose files are gone
    # a long run publishes its progress after this many files or seconds, whichever first
    # (between files; see MOST_TIME_IN_COMMITS); an interrupted one publishes what it
    # embedded (see GracefulStop)
    commit_every: int = 500
    commit_seconds: float = 30.0
    # str(path), as given in `files` -> its Annotation. An annotated file takes its labels and
    # texts from here, not from sidecars or its folder, so that a dataset's labels are exact.
    # Only files that are (re)embedded read it: a new annotation on an unchanged file is not
    # applied (xsearch.eval builds a fresh index instead).
    annotations: Mapping[str, Annotation] | None = None
    # which frames of a video are embedded: central, every:SECONDS, scenes[:MAX], mean[:N] (see
    # FramePolicy); None: the index's, else central. Kept as the policy's canonical text.
    frames: str | None = None

    def __post_init__(self) -> None:
        if self.frames is not None:
            self.frames = str(FramePolicy.parse(self.frames))

    def frames_for(self, recorded: dict | None = None) -> str:
        """The frame policy this ingest uses: the one asked for, else the index's (`recorded`
        recipe), else central."""
        return self.frames or (recorded or {}).get("frames") or "central"

    def window_for(self, spec: EncoderSpec, recorded: dict | None = None) -> float:
        """The audio window this ingest uses with a model of `spec`: the one asked for, else
        the index's (`recorded` recipe), else the model's."""
        window = self.window_seconds or (recorded or {}).get("window_seconds")
        return float(window or spec.window_seconds)

    def recipe(self, spec: EncoderSpec) -> dict:
        """How this ingest cuts files into items, as the index records it: an index holds
        items of one recipe only, so an ingest with another one is refused, never mixed in."""
        return {"window_seconds": self.window_for(spec), "frames": self.frames_for()}


@dataclass
class IngestReport:
    """What one ingest did, file by file counted once: `added` (new paths, copies included),
    `changed` (new content at a known path), `renamed`, `unchanged`, `failed`."""

    files: int = 0
    added: int = 0
    unchanged: int = 0
    renamed: int = 0
    changed: int = 0
    removed: int = 0
    # Of the added and changed files, those whose content was indexed already under another
    # path: they got their own asset with that content's vectors, without embedding again.
    copied: int = 0
    # Indexed files that are gone and were kept (prune drops them).
    missing: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    # stopped by Ctrl-C or SIGTERM: what was embedded is published, the rest is for next time
    interrupted: bool = False
    # Files skipped by the folder walk as of no media type (filled by the caller that scans;
    # see scan.find_files's on_unsupported and scan.summarize_unsupported).
    unsupported: list[str] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)  # items embedded, per modality
    generation: int = 0
    merges: int = 0  # segment merges run after the commits (store/draft.py's MergePolicy)
    seconds: float = 0.0
    decode_seconds: float = 0.0  # time this process waited for decoded files
    embed_seconds: float = 0.0
    # of embed_seconds, per modality (in this process; on Ray, the time spent handing batches)
    embed_seconds_by_modality: dict[str, float] = field(default_factory=dict)

    @property
    def items_per_second(self) -> float:
        """Items embedded per second of the whole ingest (planning and commits included)."""
        return sum(self.items.values()) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()} | {
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "unsupported": list(self.unsupported),
            "items_per_second": round(self.items_per_second, 3),
        }


@dataclass
class _Plan:
    to_decode: list[Path] = field(default_factory=list)
    hashes: dict[Path, str] = field(default_factory=dict)
    replaced: dict[Path, int] = field(default_factory=dict)  # changed file -> old asset id
    copies: dict[Path, int] = field(default_factory=dict)  # file -> the asset of its content
    still_failing: list[dict] = field(default_factory=list)  # failed before, unchanged since


def _plan(files: list[Path], store: Store, changes: Changes, report: IngestReport) -> _Plan:
    """Sort files into unchanged, renamed, copied, changed and new, hashing only when needed.

    Content that is indexed already is never embedded again. A file holding it takes over an
    asset whose own path is gone or now holds other content (a rename: also one over an
    indexed file, or a swap of two names); while the content is still in place under every
    other path, the file is a copy: it gets an asset of its own holding that content's items
    and vectors. An asset whose path now holds other content and that no file takes over is
    replaced (once the new content is embedded or copied) or, when its file moved over
    another indexed file, removed."""
    assets = store.assets.to_pylist()
    by_path = {a["path"]: a for a in assets}
    failed_before = {(f["path"], f["bytes"], f["mtime"]): f for f in store.failures.to_pylist()}
    plan = _Plan()
    differs: dict[Path, str] = {}  # file -> its content hash, unlike what its path had
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
        differs[path] = digest

    overwritten = {str(p) for p in differs}
    # assets whose content is no longer at their path: their file is gone or holds other bytes
    vacated = {
        a["asset_id"] for a in assets if a["path"] in overwritten or not Path(a["path"]).exists()
    }
    by_hash: dict[str, list[dict]] = {}
    for asset in assets:
        by_hash.setdefault(asset["content_hash"], []).append(asset)
    for path, digest in differs.items():
        twins = by_hash.get(digest, [])
        free = [a["asset_id"] for a in twins if a["asset_id"] in vacated]
        if free:
            changes.renamed[free[0]] = str(path)
            vacated.discard(free[0])  # taken: a second file of it is a copy of this one
            report.renamed += 1
        elif twins:
            plan.copies[path] = twins[0]["asset_id"]  # in place at its own path: a copy
        else:
            plan.hashes[path] = digest
            plan.to_decode.append(path)
    for path in differs:
        known = by_path.get(str(path))
        if known is None or known["asset_id"] in changes.renamed:
            continue  # new, or its old content was moved to another path
        if path in plan.hashes or path in plan.copies:
            plan.replaced[path] = known["asset_id"]  # removed once the new content is in
        else:
            changes.removed_assets.add(known["asset_id"])
            report.removed += 1
    return plan


# (path as given, its Decoded or None, None or the reason it failed), as each file finishes
DecodeResult = tuple[str, "Decoded | None", "str | None"]


class Embedder(Protocol):
    """Embeds batches of one modality, here or elsewhere, now or later."""

    batch_size: int

    def submit(self, modality: str, payloads: list, done: Callable[[np.ndarray], None]) -> None:
        """Embed `payloads`; `done(vectors)` is called (now, or by a later call) with the rows."""

    def wait(self) -> None:
        """Return once every submitted batch is done."""


class Backend(Protocol):
    """Where the decode and embed stages run."""

    def decoding(
        self, paths: list[str], options: IngestOptions, encoder: Encoder
    ) -> AbstractContextManager[Iterator[DecodeResult]]:
        """Decode `paths` with `options`' limits, for `encoder`'s inputs (`decode_settings`)."""

    def embedding(self, encoder: Encoder) -> AbstractContextManager[Embedder]:
        """Embed with `encoder`'s model (or the same model, loaded elsewhere)."""


class LocalBackend:
    """Decode in this machine's worker processes (DecodePool), embed in this process.

    A video's frames over time and a file's sound are written by the worker to files in a
    temporary folder of this run as they are decoded, and read back as they are embedded
    (`xsearch.ingest.spill`), so that memory does not grow with a file's length; a video's
    sound comes ahead of its frames over time, so that the model embeds it while they decode.
    `spill_frames=False` passes all through the worker's pipe in memory instead."""

    def __init__(self, spill_frames: bool = True) -> None:
        self.spill_frames = spill_frames
        self._pool: DecodePool | None = None  # of the run, for the embedder to share CPUs

    @contextmanager
    def decoding(
        self, paths: list[str], options: IngestOptions, encoder
    ) -> Iterator[Iterator[DecodeResult]]:
        if not paths:  # nothing to decode: no worker processes to start
            yield iter(())
            return
        settings = decode_settings(options, encoder)
        # The folder is removed last, with whatever a failure or an interrupt left in it.
        with (
            self._spill_folder() as folder,
            DecodePool(
                options.workers, **settings, spill_dir=folder, early_sound=folder is not None
            ) as pool,
        ):
            self._pool = pool
            try:
                yield pool.imap(paths)
            finally:
                self._pool = None

    def _spill_folder(self) -> AbstractContextManager[str | None]:
        return spill_folder() if self.spill_frames else nullcontext()

    @contextmanager
    def embedding(self, encoder) -> Iterator[Embedder]:
        yield _InProcessEmbedder(encoder, self._decoding_now)

    def _decoding_now(self) -> int:
        """Workers on a long decode (a long video's frames): those the model makes room for.
        Small files come and go within a batch: a core given up for them would mostly idle."""
        return self._pool.busy(for_at_least=LONG_DECODE_SECONDS) if self._pool is not None else 0


class _InProcessEmbedder:
    """Embeds in this process. On a CPU, while decode workers are on long decodes, the model
    runs on as many threads as there are cores they leave free (at least one): a core shared
    by a model thread and a decoder slows the model more than the decoder's share, as its
    threads wait for the one that lost the core (one hour-long video: 0.83 -> 0.87-0.88 of
    the model-only speed; many small files: no change)."""

    def __init__(self, encoder, decoding_now: Callable[[], int] = lambda: 0) -> None:
        self.encoder = encoder
        self.batch_size = encoder.batch_size
        self.decoding_now = decoding_now
        self.on_cpu = str(getattr(encoder, "device", "")) == "cpu"
        self.threads: int | None = None  # torch's own count, read at the first batch

    def submit(self, modality: str, payloads: list, done: Callable[[np.ndarray], None]) -> None:
        torch = _loaded_torch() if self.on_cpu else None
        if torch is not None:
            self.threads = self.threads or torch.get_num_threads()
            _set_threads(torch, max(1, self.threads - self.decoding_now()))
        try:
            done(embed_batch(self.encoder, modality, payloads))
        finally:
            if torch is not None and self.threads is not None:
                _set_threads(torch, self.threads)

    def wait(self) -> None:
        pass


def _loaded_torch():
    """torch, when the model runs on it (a fake encoder never imports it). The import
    statement, not a look into sys.modules: the towers load in a background thread, and
    this waits for an import of torch that is under way there to finish."""
    if "torch" not in sys.modules:
        return None
    import torch

    return torch


def _set_threads(torch, count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def decode_settings(options: IngestOptions, encoder: Encoder) -> dict:
    """DecodePool's arguments (but the number of workers) for `options` and `encoder`: the
    image size and sample rate the model takes, None for a modality it does not embed (which
    is then not decoded at all)."""
    spec = encoder.spec
    return {
        "timeout": options.timeout,
        "memory_mb": options.memory_mb,
        "window_seconds": options.window_for(spec),
        "image_size": spec.image.size if spec.image else None,
        "sample_rate": spec.audio.sample_rate if spec.audio else None,
        # normalised in the workers: the process running the model only runs the model
        "image_norm": (spec.image.mean, spec.image.std) if spec.image else None,
        "resampler": spec.audio.resampler if spec.audio else "swr",
        "channels": spec.audio.channels if spec.audio else "mean",
        # a model of fixed clips gets no window longer than its clip
        "merge_tail": not (spec.audio and spec.audio.clip_seconds),
        "frames": options.frames_for(),
        # a model of video clips (MMV): each moment becomes a clip of (frames, fps)
        "clip": spec.image.clip if spec.image else None,
    }


def embed_batch(encoder: Encoder, modality: str, payloads: list) -> np.ndarray:
    """One batch of `modality` items -> their [n, dim] rows. An image item may be a stack of
    frames (the `mean:N` frame policy: [n, 3, h, w] prepared, or [n, h, w, 3] uint8; for a
    model of clips, [n, frames, h, w, 3] clips): its row is the normalised mean of its
    frames' unit vectors."""
    image = encoder.spec.image
    item_ndim = 4 if image and image.clip else 3  # a clip, or a picture
    stacks = [modality == "image" and _is_stack(p, item_ndim) for p in payloads]
    if not any(stacks):
        return encoder.embed(modality, payloads)
    flat, owners = [], []
    for owner, (payload, stack) in enumerate(zip(payloads, stacks)):
        frames = [_frame_payload(f) for f in payload] if stack else [payload]
        flat += frames
        owners += [owner] * len(frames)
    rows = encoder.embed(modality, flat)
    sums = np.zeros((len(payloads), rows.shape[1]), dtype=np.float32)
    np.add.at(sums, owners, rows)
    from xsearch.models.encoder import normalize_parts

    return normalize_parts(sums, encoder.spec.spaces)  # each space's part its own mean


def _is_stack(payload: object, item_ndim: int) -> bool:
    return isinstance(payload, np.ndarray) and payload.ndim == item_ndim + 1


def _frame_payload(frame: np.ndarray):
    return frame if frame.dtype == np.float32 or frame.ndim == 4 else Image.fromarray(frame)


class _Batcher:
    """Collects decoded items and embeds them a batch at a time. The embedder may finish a
    batch later (on a cluster): `finish` waits for every one, and comes before a commit."""

    def __init__(
        self,
        embedder: Embedder,
        writer: Writer,
        changes: Changes,
        report: IngestReport,
        modalities: Sequence[str],
    ) -> None:
        self.embedder, self.writer, self.changes, self.report = embedder, writer, changes, report
        self.pending: dict[str, list[tuple[dict, object]]] = {m: [] for m in modalities}

    def add(self, modality: str, item: dict, payload: object) -> None:
        self.pending[modality].append((item, payload))
        if len(self.pending[modality]) >= self.embedder.batch_size:
            self.flush(modality)

    def drop(self, asset_id: int) -> None:
        """Forget the items of `asset_id` added so far (its file failed half-way): those still
        pending and those embedded (or being embedded) for the next commit."""
        for m, batch in self.pending.items():
            self.pending[m] = [entry for entry in batch if entry[0]["asset_id"] != asset_id]
        gone = [item for item in self.changes.new_items if item["asset_id"] == asset_id]
        for item in gone:
            self.report.items[item["modality"]] -= 1
        self.changes.discard_items(item["item_id"] for item in gone)

    def flush(self, modality: str | None = None) -> None:
        for m in [modality] if modality else list(self.pending):
            batch, self.pending[m] = self.pending[m], []
            if not batch:
                continue
            ids = self.writer.allocate_items(len(batch))
            for item_id, (item, _) in zip(ids, batch):
                item["item_id"] = int(item_id)
                self.changes.new_items.append(item)
            self.report.items[m] = self.report.items.get(m, 0) + len(batch)
            t0 = time.perf_counter()
            done = partial(self.changes.add_vectors, m, ids)
            self.embedder.submit(m, [p for _, p in batch], done)
            took = time.perf_counter() - t0
            self.report.embed_seconds += took
            by_modality = self.report.embed_seconds_by_modality
            by_modality[m] = by_modality.get(m, 0.0) + took

    def finish(self) -> None:
        self.flush()
        t0 = time.perf_counter()
        self.embedder.wait()
        self.report.embed_seconds += time.perf_counter() - t0


def ingest(
    files: Iterable[Path],
    index_dir: Path,
    encoder: Encoder,
    options: IngestOptions | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_file: Callable[[Path, str, int], None] | None = None,
    backend: Backend | None = None,
) -> IngestReport:
    """Bring the index at `index_dir` up to date with `files`; returns what was done.
    `on_plan(n)` is told how many files need decoding; `on_file(path, status, items)` hears
    each file's result with the number of items embedded so far. `backend` runs decoding and
    embedding (default: `LocalBackend`). Raises UsageError when there are no files and no
    index yet (nothing to create), and when the index was built with another model or recipe.
    """
    options = options or IngestOptions()
    backend = backend or LocalBackend()
    report = IngestReport()
    start = time.perf_counter()
    files = list(files)
    if not files and not _index_exists(index_dir):
        raise UsageError(f"no media files found; index {index_dir.name} not created")
    report.files = len(files)
    spec = encoder.spec
    recorded = _recorded_recipe(index_dir)
    options = replace(
        options,
        window_seconds=options.window_for(spec, recorded),
        frames=options.frames_for(recorded),
    )
    files, refused = _split_unstorable_names(files)
    files, unembeddable = _split_unembeddable(files, spec)
    refused += unembeddable
    report.failed += [(f["path"], f["reason"]) for f in refused]
    widths, recipe = spec.widths, options.recipe(spec)
    with Writer(index_dir, model_identity(encoder), widths=widths, recipe=recipe) as writer:
        changes = Changes()
        plan = _plan(files, writer.store, changes, report)
        if on_plan:
            on_plan(len(plan.to_decode))
        if plan.to_decode:  # the model loads while the workers start and decode
            _preload(encoder, plan.to_decode)
        new_failures: list[dict] = list(refused)
        done_since_commit = 0
        paths = [str(p) for p in plan.to_decode]
        stop = GracefulStop()  # Ctrl-C: publish what is embedded (the commit below), then exit
        with (
            stop,
            backend.embedding(encoder) as embedder,
            backend.decoding(paths, options, encoder) as decoded_files,
        ):
            batcher = _Batcher(embedder, writer, changes, report, spec.modalities)
            _add_copies(plan, writer, changes, batcher, options, report)
            # path -> asset id of a video whose sound came ahead of its frames (and is being
            # embedded); no commit is made while one is there, as its asset is not yet added
            started: dict[str, int] = {}
            waited = last_commit = time.perf_counter()
            commit_cost = 0.0  # seconds the last periodic commit took
            for name, decoded, reason in _until_stopped(decoded_files, stop):
                report.decode_seconds += time.perf_counter() - waited
                if decoded is not None and decoded.partial:
                    started[name] = writer.allocate_asset()
                    _add_items(started[name], decoded, batcher)
                    discard(decoded.audio)
                    waited = time.perf_counter()
                    continue
                early = started.pop(name, None)
                received = decoded
                path = Path(name)
                st = path.stat() if path.exists() else None
                if decoded is not None:
                    reason = _nothing_to_embed(decoded, spec)
                    decoded = None if reason else decoded
                if decoded is None:
                    if early is not None:  # its sound was embedded: none of it is kept
                        batcher.drop(early)
                    reason = (reason or "").removeprefix(f"{path}: ")
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
                    _add_asset(path, decoded, plan, writer, changes, batcher, options, st, early)
                    _count_new(path, plan, changes, report)
                if received is not None:  # read (or of no use): the spill files go
                    discard(received.frames)
                    discard(received.audio)
                if on_file:
                    on_file(path, reason or "ok", sum(report.items.values()))
                done_since_commit += 1
                since = time.perf_counter() - last_commit
                worth = commit_cost <= MOST_TIME_IN_COMMITS * (since + commit_cost)
                due = since >= options.commit_seconds and worth
                if (due or done_since_commit >= options.commit_every) and not started:
                    batcher.finish()
                    began = time.perf_counter()
                    writer.commit(changes)
                    report.merges += len(writer.compact())
                    changes = batcher.changes = Changes()
                    done_since_commit = 0
                    last_commit = time.perf_counter()
                    commit_cost = last_commit - began
                waited = time.perf_counter()
            for asset_id in started.values():  # interrupted, or a backend that never ended it
                batcher.drop(asset_id)
            batcher.finish()
        report.interrupted = stop.requested
        present = {str(p) for p in files}
        gone = [
            asset["asset_id"]
            for asset in writer.store.assets.to_pylist()
            if asset["path"] not in present
            and asset["asset_id"] not in changes.renamed
            and asset["asset_id"] not in changes.removed_assets
            and not Path(asset["path"]).exists()
        ]
        if options.prune:
            changes.removed_assets.update(gone)
            report.removed += len(gone)
        else:
            report.missing = len(gone)
        seen = present | {f["path"] for f in refused}
        elsewhere = [f for f in writer.store.failures.to_pylist() if f["path"] not in seen]
        # By path: decode workers finish in any order, and an unchanged list commits nothing.
        failures = sorted(elsewhere + plan.still_failing + new_failures, key=_by_path)
        if failures != sorted(writer.store.failures.to_pylist(), key=_by_path):
            changes.failures = failures
        if not changes.empty():
            writer.commit(changes)
        if not stop.requested:  # interrupted: publish and go; the next ingest merges
            report.merges += len(writer.compact())  # merges are commits of their own
        report.generation = writer.store.generation
    report.seconds = time.perf_counter() - start
    return report


def _until_stopped(results: Iterable[DecodeResult], stop: GracefulStop) -> Iterator[DecodeResult]:
    """The decoded files, until the first interrupt: at once when it comes while waiting for
    the next file, else after the file being added."""
    results = iter(results)
    while not stop.requested:
        try:
            with stop.waiting():
                result = next(results)
        except (StopIteration, StopRequested):
            return
        yield result


def _preload(encoder: Encoder, files: list[Path]) -> None:
    """Start loading the towers the files will need (encoders that load lazily only)."""
    preload = getattr(encoder, "preload", None)
    if preload is not None:
        kinds = {kind_of(p) for p in files}
        wanted = {m for kind in kinds for m in _KIND_MODALITIES.get(kind or "", ("image", "audio"))}
        preload(wanted)


def _recorded_recipe(index_dir: Path) -> dict | None:
    from xsearch.store.manifest import read_manifest

    manifest = read_manifest(index_dir) if index_dir.is_dir() else None
    return manifest.recipe if manifest else None


def _index_exists(index_dir: Path) -> bool:
    return index_dir.is_dir() and Store.open(index_dir).manifest is not None


def _count_new(path: Path, plan: _Plan, changes: Changes, report: IngestReport) -> None:
    """Count a file that got a new asset: a new path, or new content at a known one (whose
    old asset goes now that the new one is in)."""
    if path in plan.replaced:
        changes.removed_assets.add(plan.replaced[path])
        report.changed += 1
    else:
        report.added += 1


def _nothing_to_embed(decoded: Decoded, spec: EncoderSpec) -> str | None:
    """Why a decoded file gives the model nothing to embed (its modalities were not decoded,
    see `decode_settings`), or None when it gives something."""
    if decoded.frames or decoded.audio:
        return None
    if decoded.kind == "video" and spec.audio is not None:
        return f"no sound to embed, and model {spec.config} does not embed image"
    wanted = " or ".join(_KIND_MODALITIES.get(decoded.kind, ("image", "audio")))
    return f"model {spec.config} does not embed {wanted}"


def _by_path(failure: dict) -> str:
    return failure["path"]


def _split_unstorable_names(files: list[Path]) -> tuple[list[Path], list[dict]]:
    """Paths are stored as UTF-8 text: a file whose name is not valid UTF-8 is listed as
    failed, under its name with the undecodable bytes escaped, instead of stopping the run."""
    kept, failed = [], []
    for path in files:
        try:
            str(path).encode("utf-8")
            kept.append(path)
        except UnicodeEncodeError:
            st = path.stat()
            readable = os.fsencode(path).decode("utf-8", "backslashreplace")
            reason = "the file name is not valid UTF-8: rename the file"
            failed.append({"path": readable, "reason": reason, "bytes": st.st_size,
                           "mtime": st.st_mtime})  # fmt: skip
    return kept, failed


def _split_unembeddable(files: list[Path], spec: EncoderSpec) -> tuple[list[Path], list[dict]]:
    """Files whose kind (by extension) gives none of the model's modalities, e.g. pictures for
    an audio-text model, are listed as failed with that reason, without being decoded."""
    kept, failed = [], []
    for path in files:
        wanted = _KIND_MODALITIES.get(kind_of(path) or "")
        if wanted is None or any(m in spec.modalities for m in wanted):
            kept.append(path)  # media the model takes, or a file judged by its content
            continue
        st = path.stat() if path.exists() else None
        reason = f"model {spec.config} does not embed {' or '.join(wanted)}"
        failed.append({"path": str(path), "reason": reason, "bytes": st.st_size if st else -1,
                       "mtime": st.st_mtime if st else -1.0})  # fmt: skip
    return kept, failed


def _texts_and_labels(path: Path, options: IngestOptions) -> tuple[list[str], list[str]]:
    """(texts, labels) of a file: its annotation, else its sidecars (and folder)."""
    annotation = options.annotations.get(str(path)) if options.annotations else None
    if annotation is not None:
        return list(annotation[1]), list(annotation[0])
    texts, labels = sidecar_texts(path)
    if options.labels_from_folder:
        labels = [*labels, folder_label(path)]
    return texts, labels


def _add_asset(path, decoded, plan, writer, changes, batcher, options, st, early=None) -> None:
    """The asset of a decoded file and its items; `early`: the asset id its sound was
    embedded under already (see `Decoded.partial`)."""
    asset_id = writer.allocate_asset() if early is None else early
    texts, labels = _texts_and_labels(path, options)
    changes.new_assets.append(
        {
            "asset_id": asset_id,
            "path": str(path),
            "content_hash": plan.hashes[path],
            "kind": decoded.kind,
            "bytes": st.st_size,
            "mtime": st.st_mtime,
            "duration": decoded.duration,
            "labels": labels,
        }
    )
    _add_items(asset_id, decoded, batcher, sound=early is None)
    if "text" in batcher.pending:
        for text in texts:
            batcher.add("text", _item(asset_id, "text", None, None, text), text)


def _add_items(asset_id: int, decoded: Decoded, batcher: _Batcher, sound: bool = True) -> None:
    """The frames of a decoded file, and its sound unless `sound` is False, to embed."""
    for start, end, pixels in decoded.frames:  # spilled frames: read one at a time
        # normalised by the worker, or uint8 pixels (see Decoded)
        prepared = pixels.dtype == np.float32 or pixels.ndim >= 4  # (a stack or clip)
        payload = pixels if prepared else Image.fromarray(pixels)
        batcher.add("image", _item(asset_id, "image", start, end), payload)
    if sound:
        for start, end, wave in decoded.audio:  # spilled sound: one window at a time
            batcher.add("audio", _item(asset_id, "audio", start, end), np.asarray(wave))


def _add_copies(
    plan: _Plan,
    writer: Writer,
    changes: Changes,
    batcher: _Batcher,
    options: IngestOptions,
    report: IngestReport,
) -> None:
    """Give each copy of indexed content its own asset: the items of the asset holding that
    content, under new ids, with their stored vectors (no model call). Texts come from the
    copy's own sidecars: one equal to a text of the original reuses its vector, another one
    is embedded."""
    if not plan.copies:
        return
    store = writer.store
    originals = pa.array(sorted(set(plan.copies.values())), type=pa.int64())
    assets = store.assets.filter(pc.is_in(store.assets.column("asset_id"), originals))
    by_id = {a["asset_id"]: a for a in assets.to_pylist()}
    rows = store.items.filter(pc.is_in(store.items.column("asset_id"), originals)).to_pylist()
    items: dict[int, list[dict]] = {}
    for row in rows:
        items.setdefault(row["asset_id"], []).append(row)
    ids = [r["item_id"] for r in rows]
    vectors = dict(zip(ids, store.vectors(ids))) if ids else {}
    for path, original in plan.copies.items():
        st = path.stat()
        texts, labels = _texts_and_labels(path, options)
        asset_id = writer.allocate_asset()
        own = {"asset_id": asset_id, "path": str(path), "bytes": st.st_size,
               "mtime": st.st_mtime, "labels": labels}  # fmt: skip
        changes.new_assets.append(by_id[original] | own)  # content, kind, duration: the same
        theirs = items.get(original, [])
        their_texts = {r["text"]: r for r in theirs if r["modality"] == "text"}
        reused = [r for r in theirs if r["modality"] != "text"]
        reused += [their_texts[t] for t in texts if t in their_texts]
        for modality in dict.fromkeys(r["modality"] for r in reused):
            rows_of = [r for r in reused if r["modality"] == modality]
            new_ids = writer.allocate_items(len(rows_of))
            for item_id, row in zip(new_ids, rows_of):
                changes.new_items.append(row | {"item_id": int(item_id), "asset_id": asset_id})
            vecs = np.stack([vectors[r["item_id"]] for r in rows_of])
            changes.add_vectors(modality, new_ids, vecs)
        if "text" in batcher.pending:
            for text in texts:
                if text not in their_texts:
                    batcher.add("text", _item(asset_id, "text", None, None, text), text)
        report.copied += 1
        _count_new(path, plan, changes, report)


def _item(asset_id: int, modality: str, start, end, text: str | None = None) -> dict:
    return {"asset_id": asset_id, "modality": modality, "start": start, "end": end, "text": text}
