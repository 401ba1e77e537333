"""A Hypothesis state machine over a media folder and its index: random sequences of adding,
changing, renaming and deleting files, ingests (small commit batches, with and without prune,
some interrupted mid-way), rebuilds to other FAISS types and reopens. After every step the
store is consistent; after every completed ingest it matches the folder exactly.

Checked after every step (`consistent`):
- per modality: FAISS `ntotal` == item rows, ids unique, stored embeddings == items, every item
  its own nearest neighbour (up to identical vectors), the reference sample
  (`tests.test_store.check_invariants`);
- every item resolves to an asset, asset ids and paths are unique, `data/` holds no file that
  neither the published nor the previous generation uses;
- searches through the engine return items that resolve, the query's own item first.

Checked after each ingest, against the store before it:
- nothing already indexed is embedded again (new items belong to content not indexed before,
  or are copies of its items with their vectors);
- indexed content still present in the folder keeps an asset with the same item ids and
  identical vectors (a rename keeps its embeddings).

Checked after each completed ingest, against the folder:
- every asset at an existing path has that file's content hash (a changed file was
  re-embedded, its old items are gone);
- every content in the folder is indexed under a path that holds it (a copy of content
  indexed under another path gets an asset of its own, with that content's vectors);
- with prune, every asset's file exists; without prune, deleted files may remain.

A rebuild and a reopen keep assets, items and vectors exactly, and every sequence ends with a
complete pruning ingest, after interrupted ones too. The model's vectors are remembered per
input (CachingEncoder), so a run costs the store's work, not the model's.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.helpers.media_factory import write_video
from tests.helpers.store import check_invariants
from tests.helpers.tally import record
from xsearch.ingest.identity import content_hash
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.samples import image_samples, write_wav
from xsearch.search.engine import search
from xsearch.store.draft import MergePolicy
from xsearch.store.manifest import kept_manifest
from xsearch.store.names import generation_of
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import DATA, Store, Writer, full_merge
from xsearch.store.verify import verify_index

pytestmark = pytest.mark.slow  # random sequences of file changes and ingests

STEMS = ("a", "b", "c", "sub/d")
# Few names and payloads per kind, so that moves over files, swaps and shared content are common.
NAMES = [f"{stem}.{kind}" for stem in STEMS for kind in ("wav", "png")] + ["a.mp4", "sub/d.mp4"]
MAX_FILES = 6
FACTORIES = ("Flat", "IVF2,Flat", "HNSW8")
MODALITIES = ("image", "audio", "text")


def ext(name: str) -> str:
    return name.rsplit(".", 1)[1]


def _payloads() -> dict[str, dict[str, bytes]]:
    """Distinct small files per extension, generated once: 1 s tones, 32 px pictures, two
    1 s videos whose frames are alike (identical image vectors) but whose sound differs."""
    rate = 44100
    t = np.arange(rate) / rate
    out: dict[str, dict[str, bytes]] = {"wav": {}, "png": {}, "mp4": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for k, freq in enumerate((220.0, 495.0, 880.0, 1320.0)):
            path = Path(tmp) / f"{k}.wav"
            write_wav(path, 0.5 * np.sin(2 * np.pi * freq * t) * (1 + (k % 2) * np.sin(3 * t)))
            out["wav"][f"wav{k}"] = path.read_bytes()
        for k, image in enumerate(list(image_samples((32, 32)).values())[:3]):
            buffer = io.BytesIO()
            image.save(buffer, format="png")
            out["png"][f"png{k}"] = buffer.getvalue()
        for k, freq in enumerate((300.0, 1200.0)):
            path = Path(tmp) / f"{k}.mp4"
            write_video(path, n_frames=10, size=(32, 32), audio_freq=freq)
            out["mp4"][f"mp4{k}"] = path.read_bytes()
    return out


class Stats:
    sequences = steps = passed = 0


STATS = Stats()
_SHARED: dict[str, object] = {}


class CachingEncoder:
    """The tiny random encoder, remembering each input's vector: the payloads recur across
    sequences, and what is tested here is the store and ingest, not the model (which is
    deterministic, so a remembered vector is the one it would compute)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.cache: dict[tuple, np.ndarray] = {}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def _embed(self, kind: str, batch: list, key, embed) -> np.ndarray:
        keys = [(kind, *key(x)) for x in batch]
        missing = [x for k, x in zip(keys, batch) if k not in self.cache]
        if missing:
            self.cache.update(zip([(kind, *key(x)) for x in missing], embed(missing)))
        return np.stack([self.cache[k] for k in keys])

    def embed_audio(self, batch):
        key = lambda w: (np.asarray(w).shape, np.asarray(w).tobytes())  # noqa: E731
        return self._embed("audio", batch, key, self.inner.embed_audio)

    def embed_images(self, batch):
        def key(im) -> tuple:  # a picture prepared by a decode worker, or a PIL image
            if isinstance(im, np.ndarray):
                return (str(im.dtype), im.shape, im.tobytes())
            return (im.mode, im.size, im.tobytes())

        return self._embed("image", batch, key, self.inner.embed_images)

    def embed_text(self, batch):
        return self._embed("text", batch, lambda t: (repr(t),), self.inner.embed_text)

    def embed(self, modality, batch):
        return {"image": self.embed_images, "audio": self.embed_audio, "text": self.embed_text}[
            modality
        ](batch)


class Interrupted(Exception):
    """Raised by FailingEncoder: an ingest stopped mid-way."""


class FailingEncoder:
    """An encoder failing on the embedding call after `calls` successful ones."""

    def __init__(self, inner, calls: int) -> None:
        self.inner, self.calls_left = inner, calls

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def _tick(self) -> None:
        if self.calls_left == 0:
            raise Interrupted
        self.calls_left -= 1

    def embed_audio(self, batch):
        self._tick()
        return self.inner.embed_audio(batch)

    def embed_images(self, batch):
        self._tick()
        return self.inner.embed_images(batch)

    def embed_text(self, batch):
        self._tick()
        return self.inner.embed_text(batch)

    def embed(self, modality, batch):
        self._tick()
        return self.inner.embed(modality, batch)


def snapshot(store: Store) -> dict:
    """Assets, items and vectors of a generation, as plain data."""
    items = {i["item_id"]: i for i in store.items.to_pylist()}
    vectors = {}
    for modality in MODALITIES:
        ids, vecs = store.embeddings(modality)
        vectors.update((int(i), v.tobytes()) for i, v in zip(ids, vecs))
    return {
        "assets": {a["asset_id"]: a for a in store.assets.to_pylist()},
        "items": items,
        "vectors": vectors,
        "next_item_id": store.manifest.next_item_id if store.manifest else 0,
    }


def items_of(snap: dict, asset_id: int) -> dict[int, bytes]:
    return {
        i: snap["vectors"][i] for i, item in snap["items"].items() if item["asset_id"] == asset_id
    }


class IndexMachine(RuleBasedStateMachine):
    """The folder (`files`: relative path -> payload name) and its index."""

    def __init__(self) -> None:
        super().__init__()
        STATS.sequences += 1
        self.tmp = Path(tempfile.mkdtemp(prefix="xsearch-sm-"))
        self.root = self.tmp / "media"
        (self.root / "sub").mkdir(parents=True)
        self.index = self.tmp / "index"
        self.files: dict[str, str] = {}
        self.clock = 1_600_000_000  # mtimes: every write gets a later second
        self.last_prune = False
        self.snap: dict | None = None  # the store after the last step that wrote it
        self.stepping = False  # a step ran and the invariants were not checked since

    def teardown(self) -> None:
        """Every sequence ends with a complete, pruning ingest: the index converges to the
        folder, however the steps before left it."""
        try:
            if self.snap is not None:
                self._step()
                self._ingest(_SHARED["encoder"], 2, prune=True)
                self.consistent()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the folder --------------------------------------------------------------------------

    @property
    def payloads(self) -> dict[str, dict[str, bytes]]:
        return _SHARED["payloads"]  # type: ignore[return-value]

    def _write(self, rel: str, key: str) -> None:
        path = self.root / rel
        path.write_bytes(self.payloads[ext(rel)][key])
        self.clock += 1
        os.utime(path, ns=(self.clock * 10**9, self.clock * 10**9))
        self.files[rel] = key

    def _step(self) -> None:
        if not self.stepping:  # populate's adds and ingest make one step
            STATS.steps += 1
            self.stepping = True

    @initialize(data=st.data(), n=st.integers(1, 4), factory=st.sampled_from((None, *FACTORIES)))
    def populate(self, data, n, factory) -> None:
        """Start from an indexed folder, maybe re-typed, so that short sequences reach renames
        and changes of indexed files, and changes to every index type."""
        for _ in range(n):
            self.add(data)
        self.ingest(commit_every=data.draw(st.integers(1, 3)), prune=False)
        if factory is not None:
            self.rebuild(factory)

    @precondition(lambda self: len(self.files) < MAX_FILES)
    @rule(data=st.data())
    def add(self, data) -> None:
        self._step()
        rel = data.draw(st.sampled_from(sorted(set(NAMES) - set(self.files))), label="path")
        key = data.draw(st.sampled_from(sorted(self.payloads[ext(rel)])), label="payload")
        self._write(rel, key)
        if data.draw(st.booleans(), label="caption"):
            (self.root / rel).with_suffix(".txt").write_text(f"the sound and look of {key}\n")

    @precondition(lambda self: self.files and len(self.files) < MAX_FILES)
    @rule(data=st.data())
    def copy(self, data) -> None:
        """The same content under a second name (with its own mtime)."""
        self._step()
        rel = data.draw(st.sampled_from(sorted(self.files)), label="path")
        free = [n for n in NAMES if n not in self.files and ext(n) == ext(rel)]
        if free:
            self._write(data.draw(st.sampled_from(free), label="to"), self.files[rel])

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def change(self, data) -> None:
        """New content in a file: maybe what another file holds, or held before."""
        self._step()
        rel = data.draw(st.sampled_from(sorted(self.files)), label="path")
        others = sorted(set(self.payloads[ext(rel)]) - {self.files[rel]})
        self._write(rel, data.draw(st.sampled_from(others), label="payload"))

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def rename(self, data) -> None:
        """Move a file to another name of its kind, a free one or over another file."""
        self._step()
        rel = data.draw(st.sampled_from(sorted(self.files)), label="path")
        new = data.draw(st.sampled_from([n for n in NAMES if ext(n) == ext(rel) and n != rel]))
        os.replace(self.root / rel, self.root / new)  # keeps the mtime, as `mv` does
        self.files[new] = self.files.pop(rel)

    @precondition(lambda self: len(self.files) >= 2)
    @rule(data=st.data())
    def swap(self, data) -> None:
        """Exchange two files of one kind by renames: mv a t; mv b a; mv t b."""
        self._step()
        rel = data.draw(st.sampled_from(sorted(self.files)), label="path")
        partners = [n for n in sorted(self.files) if ext(n) == ext(rel) and n != rel]
        if not partners:
            return
        other = data.draw(st.sampled_from(partners), label="with")
        hidden = self.root / ".swap"  # a hidden name: never ingested
        os.replace(self.root / rel, hidden)
        os.replace(self.root / other, self.root / rel)
        os.replace(hidden, self.root / other)
        self.files[rel], self.files[other] = self.files[other], self.files[rel]

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def delete(self, data) -> None:
        self._step()
        rel = data.draw(st.sampled_from(sorted(self.files)), label="path")
        (self.root / rel).unlink()
        del self.files[rel]
        stem = rel.rsplit(".", 1)[0]
        if not any(f.startswith(stem + ".") for f in self.files):
            (self.root / f"{stem}.txt").unlink(missing_ok=True)

    # -- the index ---------------------------------------------------------------------------

    @rule(commit_every=st.integers(1, 3), prune=st.booleans())
    def ingest(self, commit_every, prune) -> None:
        self._step()
        self._ingest(_SHARED["encoder"], commit_every, prune)

    @rule(calls=st.integers(0, 3), prune=st.booleans())
    def interrupted_ingest(self, calls, prune) -> None:
        """An ingest with commit_every=1 whose encoder fails after `calls` batches."""
        self._step()
        self._ingest(FailingEncoder(_SHARED["encoder"], calls), 1, prune)

    def _ingest(self, encoder, commit_every: int, prune: bool) -> None:
        before = self.snap or {"assets": {}, "items": {}, "vectors": {}, "next_item_id": 0}
        options = IngestOptions(workers=0, commit_every=commit_every, prune=prune)
        try:
            ingest(find_files([self.root]), self.index, encoder, options)
            completed = True
        except Interrupted:
            completed = False
        store = Store.open(self.index)
        after = snapshot(store)
        self._check_incremental(before, after)
        if completed:
            self.last_prune = prune
            self._check_matches_folder(after)
        self.snap = after

    @precondition(lambda self: self.index.is_dir())
    @rule(factory=st.sampled_from(FACTORIES))
    def rebuild(self, factory) -> None:
        self._step()
        store = Store.open(self.index)
        if factory.startswith("IVF"):  # training needs at least as many points as lists
            nlist = int(factory[3:].split(",")[0])
            counts = [len(store.item_ids(m)) for m in MODALITIES]
            if any(0 < n < nlist for n in counts):
                factory = "Flat"
        before = snapshot(store)
        rebuilt = rebuild_indexes(self.index, factory)
        assert rebuilt.generation == store.generation + 1
        assert snapshot(Store.open(self.index)) == before
        self.snap = before

    @precondition(lambda self: self.index.is_dir() and self.snap is not None)
    @rule(full=st.booleans(), factor=st.integers(2, 4))
    def compact(self, full, factor) -> None:
        """Merges change the segments, never what the index holds or finds."""
        self._step()
        before_store = Store.open(self.index)
        before = snapshot(before_store)
        policy = full_merge() if full else MergePolicy(factor=factor, max_segments=3, floor=1)
        with Writer(self.index, before_store.manifest.model) as writer:
            writer.compact(policy)
        after = Store.open(self.index)
        assert snapshot(after) == before
        if full:
            assert len(after.manifest.segments) <= 1
            assert all(s.deleted == 0 for s in after.manifest.segments)
        self.snap = before

    @precondition(lambda self: self.snap is not None)
    @rule()
    def reopen(self) -> None:
        self._step()
        store = Store.open(self.index)
        assert snapshot(store) == self.snap
        check_invariants(store)

    # -- checks ------------------------------------------------------------------------------

    def _contents(self) -> dict[str, list[str]]:
        """Content hash of every file in the folder -> its paths."""
        out: dict[str, list[str]] = {}
        for rel in self.files:
            path = self.root / rel
            out.setdefault(content_hash(path), []).append(str(path.resolve()))
        return out

    def _check_incremental(self, before: dict, after: dict) -> None:
        indexed_before = {a["content_hash"] for a in before["assets"].values()}
        # A copy of indexed content gets new items holding that content's vectors; only a
        # caption of its own that the content had nowhere is embedded.
        kept: dict[str, set[bytes]] = {}
        texts: dict[str, set[str]] = {}
        for asset_id, asset in before["assets"].items():
            digest = asset["content_hash"]
            kept.setdefault(digest, set()).update(items_of(before, asset_id).values())
            texts.setdefault(digest, set()).update(
                item["text"] for item in before["items"].values()
                if item["asset_id"] == asset_id and item["modality"] == "text"
            )  # fmt: skip
        for item_id, item in after["items"].items():
            if item_id >= before["next_item_id"]:
                asset = after["assets"][item["asset_id"]]
                digest = asset["content_hash"]
                copied = after["vectors"][item_id] in kept.get(digest, ())
                captioned = item["modality"] == "text" and item["text"] not in texts.get(digest, ())
                assert digest not in indexed_before or copied or captioned, f"re-embedded {asset}"
        present = self._contents()
        for digest in indexed_before & set(present):
            kept = [
                asset_id
                for asset_id, asset in before["assets"].items()
                if asset["content_hash"] == digest
                and asset_id in after["assets"]
                and items_of(after, asset_id) == items_of(before, asset_id)
            ]
            assert kept, f"the embeddings of {present[digest]} were lost or redone"

    def _check_matches_folder(self, snap: dict) -> None:
        present = self._contents()
        paths = {p for ps in present.values() for p in ps}
        where: dict[str, set[str]] = {}
        for asset in snap["assets"].values():
            if asset["path"] in paths:
                current = content_hash(Path(asset["path"]))
                assert asset["content_hash"] == current, f"stale asset {asset}"
                where.setdefault(current, set()).add(asset["path"])
            else:
                assert not Path(asset["path"]).exists()
                assert not self.last_prune, f"pruned ingest kept {asset['path']}"
        missing = set(present) - set(where)
        assert not missing, f"not indexed: {[present[d] for d in missing]}"
        unlisted = paths - {asset["path"] for asset in snap["assets"].values()}
        assert not unlisted, f"no asset of their own: {sorted(unlisted)}"  # copies too

    @invariant()
    def consistent(self) -> None:
        if not self.index.is_dir():
            return
        store = Store.open(self.index)
        check_invariants(store)
        assets = store.assets.to_pylist()
        asset_ids = [a["asset_id"] for a in assets]
        paths = [a["path"] for a in assets]
        assert len(set(asset_ids)) == len(asset_ids)
        assert len(set(paths)) == len(paths), f"duplicate paths: {sorted(paths)}"
        assert set(store.items.column("asset_id").to_pylist()) <= set(asset_ids)
        self._check_data_files(store)
        self._check_search(store, {a["asset_id"]: a["path"] for a in assets})
        verdict = verify_index(self.index)
        assert verdict.healthy, [c for c in verdict.checks if not c.ok]
        if self.stepping:
            STATS.passed += 1
            self.stepping = False

    def _check_data_files(self, store: Store) -> None:
        # the files of this generation and of the previous one (whose readers may open them)
        previous = kept_manifest(self.index, store.generation - 1)
        used = {e.path for m in (store.manifest, previous) if m for e in m.files.values()}
        for path in (self.index / DATA).iterdir():
            gen = generation_of(path.name)
            assert f"{DATA}/{path.name}" in used or (
                gen is not None and gen >= store.generation - 1
            ), f"leftover {path.name}"

    def _check_search(self, store: Store, paths: dict[int, str]) -> None:
        items = {i["item_id"]: i for i in store.items.to_pylist()}
        for modality in MODALITIES:
            ids, vectors = store.embeddings(modality)
            for item_id, vector in list(zip(ids, vectors))[:2]:
                hits = search(store, vector, modality, k=3)
                # an IVF list visited may hold fewer than k items: an approximate index
                # may return fewer hits, never none (the query's own item is in its list)
                assert 1 <= len(hits) <= min(3, len(ids))
                assert hits[0].item_id == item_id or np.isclose(hits[0].cosine, 1, atol=1e-4)
                for hit in hits:
                    assert items[hit.item_id]["asset_id"] == hit.asset_id
                    assert paths[hit.asset_id] == hit.path
                everything = search(store, vector, "all", k=10)
                assert len({h.asset_id for h in everything}) == len(everything)
                assert {h.asset_id for h in everything} <= set(paths)


@pytest.fixture(scope="module")
def shared(tiny_audioclip):
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # tiny indexes: threads only wait for each other
    _SHARED["encoder"] = CachingEncoder(tiny_audioclip)
    _SHARED["payloads"] = _payloads()
    yield
    _SHARED.clear()
    faiss.omp_set_num_threads(threads)


def test_random_sequences_keep_the_index_consistent(shared):
    """About 40 sequences of up to 12 steps plus a final ingest each, the same every run
    (derandomized, no example database)."""
    STATS.sequences = STATS.steps = STATS.passed = 0
    try:
        run_state_machine_as_test(
            IndexMachine,
            settings=settings(
                max_examples=40,
                stateful_step_count=12,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        ran = f"{STATS.sequences} sequences, {STATS.steps} steps, {STATS.passed} held"
        print(f"state machine: {ran}")
        record("state machine", "random sequences", tried=STATS.steps, survived=STATS.passed)
