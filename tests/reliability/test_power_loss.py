"""Power loss at every step of a commit: what a power cut may leave on disk
(tests/helpers/powerloss.py models it: unsynced bytes and unsynced directory entries are
lost) always opens as the last acknowledged generation or the one being written, exactly;
never a torn manifest; and the next writer cleans what the lost commit left.

A state is checked with `Store.open`, every file of its manifest verified (size, sha256), the
full snapshot of tests/reliability/test_crash.py (check_invariants, assets, items, FAISS
sizes) compared with that generation's, once per distinct manifest (the rest is fixed by
the checksums), then a
`Writer` is opened on it and must leave no leftovers."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import xsearch.store.store as store_module
from tests.helpers.crash import STEPS, snapshot
from tests.helpers.powerloss import CrashImage, PowerLoss, state_digest, write_state
from tests.helpers.store import MODEL, commit_asset
from tests.helpers.tally import record
from xsearch.ingest.identity import model_identity
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.samples import audio_samples, image_samples, write_video, write_wav
from xsearch.store import manifest as manifest_module
from xsearch.store.manifest import MANIFEST, StoreCorrupt
from xsearch.store.names import generation_of
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import DATA, Store, Writer

pytestmark = pytest.mark.slow  # a power loss simulated at every write of several commits


class Run:
    """What a writer acknowledged while the model watched, and each generation's snapshot."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        store = Store.open(directory) if directory.is_dir() else None
        self.acknowledged = store.generation if store else 0
        self.durable = self.acknowledged  # publish() returned: the manifest is on disk
        self.snapshots = {self.acknowledged: snapshot(directory) if store else None}

    def context(self) -> dict:
        return {"acknowledged": self.acknowledged, "durable": self.durable}

    def watch(self, monkeypatch) -> None:
        real_publish, real_commit_publish = store_module.publish, Writer._publish
        run = self

        def publish(directory, manifest):
            real_publish(directory, manifest)
            run.durable = manifest.generation

        def commit_publish(writer, *args, **kwargs):
            store = real_commit_publish(writer, *args, **kwargs)
            run.acknowledged = store.generation  # commit() and rebuild() return this
            run.snapshots[store.generation] = snapshot(run.dir)
            return store

        monkeypatch.setattr(store_module, "publish", publish)
        monkeypatch.setattr(Writer, "_publish", commit_publish)


class Checker:
    """Materializes every variant of every crash image and checks the state it leaves."""

    def __init__(self, run: Run, rel: str, model: dict, scratch: Path) -> None:
        self.run, self.rel, self.model, self.scratch = run, rel, model, scratch
        self.seen: set[tuple[str, int, int]] = set()
        self.verified: dict[tuple[int, str], str | None] = {}
        self.problems: list[str] = []
        self.tried = self.lost_items = 0
        self.labels: set[str] = set()
        self.kinds: Counter[str] = Counter()  # distinct states tried, by kind of variant

    def check_all(self, images: list[CrashImage], seeds: int = 3) -> None:
        for image in images:
            self.labels.add(image.label)
            for variant in image.variants(seeds=seeds):
                state = image.state(variant)
                key = (state_digest(state), image.context["acknowledged"], image.context["durable"])
                if key in self.seen:  # the same state, held to the same promise
                    continue
                self.seen.add(key)
                self.tried += 1
                ops = "none" if variant.keep_ops == 0 else "all"
                ops = ops if variant.keep_ops in (0, len(image.ops)) else "some"
                self.kinds[f"{variant.contents} data, {ops} unsynced ops"] += 1
                dest = self.scratch / "state"
                write_state(state, dest)
                problem = self.check(dest / self.rel, image.context)
                if problem:
                    self.problems.append(f"{image.label} [{variant}]: {problem}")
                shutil.rmtree(dest)

    def check(self, directory: Path, context: dict) -> str | None:
        ack, durable = context["acknowledged"], context["durable"]
        allowed = {ack + 1} if durable > ack else {ack, ack + 1}
        if not directory.is_dir():
            gone = "the index directory is gone"
            return None if 0 in allowed else self._lost(0, min(allowed), gone)
        try:
            store = Store.open(directory)
            generation = store.generation
            if generation not in allowed:
                return self._lost(
                    generation, min(allowed), f"generation {generation}, not {allowed}"
                )
            for role in store.manifest.files if store.manifest else ():
                store.path(role)  # size and sha256
        except StoreCorrupt as e:
            self.lost_items += self._items(ack)
            return f"does not open: {e}"
        if store.manifest is not None:
            key = (generation, hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest())
            if key not in self.verified:
                self.verified[key] = self._same(directory, generation)
            if self.verified[key]:
                return self.verified[key]
        try:  # the next writer: it opens and removes what the lost commit left
            Writer(directory, self.model).close()
        except Exception as e:  # any failure is the finding
            return f"the next writer fails: {type(e).__name__}: {e}"
        left = [p.name for p in directory.glob(".*.tmp-*")]
        data = directory / DATA
        files = list(data.iterdir()) if data.is_dir() else []
        left += [p.name for p in files if generation_of(p.name) > generation]
        return f"leftovers after the next writer: {left}" if left else None

    def _same(self, directory: Path, generation: int) -> str | None:
        try:
            if snapshot(directory) != self.run.snapshots[generation]:
                return f"generation {generation} differs from what was committed"
        except Exception as e:  # reported as the problem
            return f"generation {generation} fails its invariants: {type(e).__name__}: {e}"
        return None

    def _items(self, generation: int) -> int:
        snap = self.run.snapshots.get(generation)
        return len(snap["items"]) if snap else 0

    def _lost(self, got: int, ack: int, message: str) -> str | None:
        if got < ack:
            have = {i["item_id"] for i in (self.run.snapshots.get(got) or {"items": []})["items"]}
            want = self.run.snapshots[ack]["items"]
            self.lost_items += sum(1 for i in want if i["item_id"] not in have)
        return message


def report(case: str, checker: Checker) -> None:
    survived = checker.tried - len(checker.problems)
    record("power loss", case, checker.tried, survived, checker.lost_items)
    assert not checker.problems, "\n".join(checker.problems[:20])


# --- an ingest of several commits, and a rebuild -----------------------------------------------


@pytest.fixture(scope="module")
def encoder(tiny_audioclip):
    return tiny_audioclip


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, encoder):
    """Generation 1 holds two files; the watched ingest adds a video (frame, sound and sidecar
    text: every modality's files), an audio file and a picture, one commit each."""
    base = tmp_path_factory.mktemp("powerloss")
    media = base / "media"
    media.mkdir()
    waves = audio_samples(seconds=1.0)
    write_wav(media / "a.wav", waves["tone_440hz.wav"])
    pictures = image_samples((64, 48))
    pictures["red_circle.png"].save(media / "b.png")
    ingest(find_files([media]), base / "home" / "idx", encoder, IngestOptions(workers=0))
    write_video(media / "c.mp4", seconds=1.0)
    (media / "c.txt").write_text("an orange sunset")
    write_wav(media / "d.wav", waves["siren.wav"])
    pictures["blue_sky.png"].save(media / "e.png")
    return base, media


def test_power_loss_at_every_step_of_ingest_commits(scenario, encoder, tmp_path, monkeypatch):
    base, media = scenario
    home = tmp_path / "home"
    shutil.copytree(base / "home", home)
    run = Run(home / "idx")
    run.watch(monkeypatch)
    options = IngestOptions(workers=0, commit_every=1)
    extra = tmp_path / "extra"
    extra.mkdir()
    write_wav(extra / "f.wav", audio_samples(seconds=1.0)["white_noise.wav"])
    with PowerLoss(home, run.context) as model:
        report_ = ingest(find_files([media]), home / "idx", encoder, options)
        rebuild_indexes(home / "idx", "IVF1,Flat", on_disk=True)  # lists in .ivfdata files
        last = ingest(find_files([extra]), home / "idx", encoder, options)  # changes them
    assert report_.generation >= 4 and last.generation == report_.generation + 2
    assert run.acknowledged == last.generation
    published = Store.open(home / "idx").manifest.files.values()
    assert any(e.path.endswith(".ivfdata") for e in published)
    assert run.durable == run.acknowledged  # the watch saw each publish
    labels = {image.label for image in model.images}
    assert set(STEPS) <= labels, set(STEPS) - labels
    assert any(label.startswith("before unlink idx/data/") for label in labels)  # cleanup

    checker = Checker(run, "idx", model_identity(encoder), tmp_path)
    checker.check_all(model.images)
    print(f"{len(model.images)} crash points, {checker.tried} distinct states: {checker.kinds}")
    report(
        "ingest (3 commits), on-disk IVF rebuild, ingest: every fsync/rename/unlink/step", checker
    )


def test_power_loss_during_the_first_ingest_into_a_new_folder(scenario, encoder, tmp_path):
    """XSEARCH_HOME and the index are created by this ingest: once it returns, its generation
    survives a power cut (the new folders' entries are synced up to one that existed)."""
    _, media = scenario
    top = tmp_path / "top"
    top.mkdir()
    run = Run(top / "home" / "idx")
    with pytest.MonkeyPatch.context() as mp:
        run.watch(mp)
        with PowerLoss(top, run.context) as model:
            ingest(find_files([media]), top / "home" / "idx", encoder, IngestOptions(workers=0))
    assert run.acknowledged == 1
    checker = Checker(run, "home/idx", model_identity(encoder), tmp_path)
    checker.check_all(model.images, seeds=2)
    print(f"{len(model.images)} crash points, {checker.tried} distinct states: {checker.kinds}")
    report("first ingest into a folder it creates", checker)


# --- the model is not vacuous: it catches the classic mistakes -----------------------------------


def commit_twice(directory: Path) -> None:
    for n in range(2):
        commit_asset(directory, f"/m/{n}.wav", 2, seed=n)


def broken_run(tmp_path: Path, monkeypatch, breakage: Callable[[], None]) -> Checker:
    home = tmp_path / "home"
    home.mkdir()
    commit_asset(home / "idx", "/m/first.wav", 3)
    breakage()  # before the watch, which wraps what the store then calls
    run = Run(home / "idx")
    run.watch(monkeypatch)
    with PowerLoss(home, run.context) as model:
        commit_twice(home / "idx")
    checker = Checker(run, "idx", MODEL, tmp_path)
    checker.check_all(model.images, seeds=2)
    return checker


def test_the_model_catches_a_manifest_renamed_before_its_bytes_are_synced(tmp_path, monkeypatch):
    def publish_without_fsync(directory: Path, manifest) -> None:
        tmp = directory / f".{MANIFEST}.tmp-1"
        tmp.write_bytes(manifest.to_json())  # no fsync: the rename may reach the disk first
        manifest_module.os.replace(tmp, directory / MANIFEST)
        manifest_module.fsync_dir(directory)

    checker = broken_run(
        tmp_path,
        monkeypatch,
        lambda: monkeypatch.setattr(store_module, "publish", publish_without_fsync),
    )
    assert any("manifest is unreadable" in p for p in checker.problems), checker.problems
    assert checker.lost_items > 0


def test_the_model_catches_a_publish_without_a_directory_fsync(tmp_path, monkeypatch):
    def publish_without_dir_fsync(directory: Path, manifest) -> None:
        tmp = directory / f".{MANIFEST}.tmp-1"
        with open(tmp, "wb") as f:
            f.write(manifest.to_json())
            f.flush()
            manifest_module.os.fsync(f.fileno())
        manifest_module.os.replace(tmp, directory / MANIFEST)

    checker = broken_run(
        tmp_path,
        monkeypatch,
        lambda: monkeypatch.setattr(store_module, "publish", publish_without_dir_fsync),
    )
    assert any("generation" in p and "not {" in p for p in checker.problems), checker.problems
    assert checker.lost_items > 0


def test_the_model_catches_data_files_published_before_their_directory_is_synced(
    tmp_path, monkeypatch
):
    real = store_module.fsync_dir

    def skip_data(path: Path) -> None:
        if path.name != DATA:
            real(path)

    checker = broken_run(
        tmp_path, monkeypatch, lambda: monkeypatch.setattr(store_module, "fsync_dir", skip_data)
    )
    assert any("missing" in p for p in checker.problems), checker.problems


def test_the_model_itself(tmp_path):
    """Unsynced bytes and entries are lost, synced ones kept, renames atomic, in order."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "old").write_bytes(b"old")
    with PowerLoss(root) as model:
        (root / "sub").mkdir()
        with open(root / "sub" / "f", "wb") as f:
            f.write(b"0123456789")
            f.flush()
            os.fsync(f.fileno())
        (root / "tmp").write_bytes(b"new!")
        os.replace(root / "tmp", root / "old")
    last = model.images[-1]  # before the rename
    assert last.label == "before rename tmp -> old"
    states = {}
    for variant in last.variants(seeds=4):
        dest = tmp_path / "s"
        last.materialize(dest, variant)
        files = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        states[str(variant)] = files
        shutil.rmtree(dest)
        assert files["old"] == b"old"  # the rename had not happened
        if variant.keep_ops == 0:
            assert files == {"old": b"old"}  # nothing synced in root: sub/ and tmp are lost
        if "sub/f" in files:
            assert files["sub/f"] == b"0123456789"  # synced bytes, even unsynced entries
        if "tmp" in files:
            assert b"new!".startswith(files["tmp"])
            if variant.contents == "zero":
                assert files["tmp"] == b""
    kept_all = [s for v, s in states.items() if v.startswith(f"{len(last.ops)} ")]
    assert all(set(s) == {"old", "sub/f", "tmp"} for s in kept_all)
    assert np.unique([len(s.get("tmp", b"")) for s in states.values()]).size >= 2
