"""Concurrency: writers against writers, readers against writers, the server against an ingest.

The contract tested here:
- One writer at a time. A second `xsearch ingest` (or `index rebuild`) on an index being
  written exits non-zero with one line naming the writer's pid; nothing it meant to add is
  lost: running it again adds it (the final index is the union of both runs).
- A reader sees one generation per answer: every hit of a search comes from the generation the
  search started with (ids, metadata, FAISS index and tables all of that generation), and a
  reader that follows the index never goes back to an older generation.
- A writer deletes the files of generations two behind the one it publishes. A reader still on
  generation g may therefore find a file of g missing (StoreCorrupt "missing", or the OS's
  FileNotFoundError when it vanished between the check and the read), and only once g+2 is
  published; it then reopens (`Index.refresh`, `Store.open`) and retries. That is an answer
  delayed, never a wrong one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import xsearch
import xsearch.api
from tests.helpers.cli import run_cli
from tests.helpers.media_factory import mixed_folder as make_folder
from tests.helpers.server import serving
from tests.helpers.store import MODEL, check_invariants, commit_asset, unit
from tests.helpers.tally import record
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.search.engine import search
from xsearch.server.app import create_app
from xsearch.store.manifest import StoreCorrupt, read_manifest
from xsearch.store.store import Store, Writer

pytestmark = pytest.mark.slow  # fault injection and races, several real processes

CLI = ["-w", "random", "--config", "audioclip-tiny", "--workers", "0"]
LOCKED = "is writing this index"


@pytest.fixture(scope="module")
def encoder(tiny_audioclip):
    return tiny_audioclip


def paths(store: Store) -> set[str]:
    return set(store.assets.column("path").to_pylist())


def expected_paths(*folders: Path) -> set[str]:
    """The files ingest keeps of `folders` (sidecars are texts of their file, not assets)."""
    return {str(p) for f in folders for p in find_files([f])}


# --- two writers -------------------------------------------------------------------------------


def test_a_writer_holding_the_lock_makes_the_cli_fail_in_one_line(tmp_path, encoder):
    folder = make_folder(tmp_path / "m", 2, seed=1)
    home = tmp_path / "home"
    ingest(find_files([folder]), home / "idx", encoder, IngestOptions(workers=0))
    env = {"XSEARCH_HOME": str(home)}
    with Writer(home / "idx", Store.open(home / "idx").manifest.model):
        began = time.perf_counter()
        done = run_cli("index", "rebuild", "--index", "idx", "--factory", "Flat", env=env)
        took = time.perf_counter() - began
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and LOCKED in lines[0] and "Traceback" not in done.stderr
    assert f"pid {os.getpid()}" in lines[0]
    assert Store.open(home / "idx").generation == 1
    record("concurrency", "a second writer while one holds the lock", 1, 1)
    assert took < 60  # it does not wait for the lock


def test_ingest_on_a_locked_index_fails_before_loading_the_model(tmp_path):
    """The lock is checked first: with a checkpoint that does not exist, the error is still
    the lock's (the model would have failed to load)."""
    home = tmp_path / "home"
    folder = make_folder(tmp_path / "m", 1, seed=5)
    with Writer(home / "idx", MODEL):
        done = run_cli("ingest", str(folder), "--index", "idx", "--weights",
                       str(tmp_path / "missing.pt"), env={"XSEARCH_HOME": str(home)})  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and LOCKED in lines[0], done.stderr


def test_two_ingests_at_once_lose_nothing(tmp_path, encoder):
    """Two `xsearch ingest` processes of different folders start together on one index: one
    fails with the lock error or both finish; after running the failed one again, the index
    holds both folders: every file, with every item it should have, none twice."""
    base = make_folder(tmp_path / "base", 2, seed=2)
    one = make_folder(tmp_path / "one", 6, seed=3)
    two = make_folder(tmp_path / "two", 6, seed=4)
    home = tmp_path / "home"
    ingest(find_files([base]), home / "idx", encoder, IngestOptions(workers=0))
    env = {"XSEARCH_HOME": str(home), "COLUMNS": "200"}
    exe = Path(sys.executable).with_name("xsearch")
    procs = {
        folder: subprocess.Popen(
            [str(exe), "ingest", str(folder), "--index", "idx", *CLI],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in (one, two)
    }
    outcomes = {}
    for folder, proc in procs.items():
        _, stderr = proc.communicate(timeout=300)
        outcomes[folder] = (proc.returncode, stderr)
    failed = [f for f, (rc, _) in outcomes.items() if rc != 0]
    said = {f.name: (rc, err.strip().splitlines()[-3:]) for f, (rc, err) in outcomes.items()}
    assert len(failed) <= 1, said  # the lock lets one through at least
    for folder in failed:
        rc, stderr = outcomes[folder]
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert rc == 1 and len(errors) == 1 and LOCKED in errors[0], stderr  # (and the banner)
        assert stderr.strip().endswith(errors[0]) and "Traceback" not in stderr
    store = Store.open(home / "idx")
    check_invariants(store)
    winners = [f for f in (one, two) if f not in failed]
    assert paths(store) == expected_paths(base, *winners)  # all of each finished run, no part
    for folder in failed:  # run again: it adds the rest
        ingest(find_files([folder]), home / "idx", encoder, IngestOptions(workers=0))
    store = Store.open(home / "idx")
    check_invariants(store)
    assert paths(store) == expected_paths(base, one, two)

    counts = {m: len(store.item_ids(m)) for m in ("image", "audio", "text")}
    files = [p for f in (base, one, two) for p in find_files([f])]
    sidecars = sum(1 for p in files if p.with_suffix(".txt").exists())
    kinds = Counter(p.suffix for p in files)
    assert counts == {"image": kinds[".png"], "audio": kinds[".wav"], "text": sidecars}
    outcome = "one locked out, then re-run" if failed else "both finished (no overlap)"
    record("concurrency", f"two ingests at once: {outcome}", 1, 1, 0)


# --- readers while writers publish --------------------------------------------------------------


def check_answer(store: Store, hits, target: str) -> None:
    """Every hit resolves, with its metadata, in the generation that answered."""
    items = {row["item_id"]: row for row in store.items.to_pylist()}
    assets = {row["asset_id"]: row for row in store.assets.to_pylist()}
    for hit in hits:
        item = items[hit.item_id]
        assert item["asset_id"] == hit.asset_id and item["modality"] == hit.modality
        assert (item["start"], item["end"]) == (hit.start, hit.end)
        if target in ("audio", "image", "text"):
            assert hit.modality == target
        asset = assets[hit.asset_id]
        assert (asset["path"], asset["kind"], asset["labels"]) == (hit.path, hit.kind, hit.labels)
    if target in ("audio", "image", "text"):
        # k is above the item count: the answer is exactly this generation's items
        index = store.faiss_index(target)
        assert index.ntotal == len(store.item_ids(target))
        assert {h.item_id for h in hits} == set(store.item_ids(target).tolist())


def test_a_reader_two_generations_behind_reopens_and_never_mixes(tmp_path):
    """The contract, step by step: a reader on generation g answers from g while g+1 is
    published; once g+2 is, g's files may be gone: a reader that had loaded them still answers
    from g, one that had not gets StoreCorrupt "missing" (never a mixed answer), and reopening
    gives g+2."""
    directory = tmp_path / "idx"

    def commit(n: int) -> None:
        commit_asset(directory, f"/m/{n}.wav", 2, seed=n)

    query = unit(1, seed=9)[0]
    commit(0)
    loaded, later, stale = Store.open(directory), Store.open(directory), Store.open(directory)
    check_answer(loaded, search(loaded, query, "audio", k=50), "audio")
    commit(1)
    check_answer(later, search(later, query, "audio", k=50), "audio")  # g+1: g is kept
    commit(2)
    with pytest.raises(StoreCorrupt, match="missing"):
        search(stale, query, "audio", k=50)
    hits = search(loaded, query, "audio", k=50)
    check_answer(loaded, hits, "audio")  # still generation 1, whole
    assert len(hits) == 2
    fresh = Store.open(directory)
    assert fresh.generation == 3
    check_answer(fresh, search(fresh, query, "audio", k=50), "audio")
    index = xsearch.api.Index.for_store(stale)
    assert index.refresh() and index.store.generation == 3
    record("concurrency", "a reader two generations behind", 4, 4)


class Reader(threading.Thread):
    """Searches in a loop until stopped, following the index; records what it saw."""

    def __init__(self, directory: Path, encoder, reopen: bool) -> None:
        super().__init__(daemon=True)
        self.dir, self.encoder, self.reopen = directory, encoder, reopen
        self.stop = threading.Event()
        self.answers: Counter[int] = Counter()  # generation -> answers
        self.retries: list[tuple[int, int, str]] = []  # (its generation, published, error)
        self.errors: list[str] = []
        self.query = encoder.embed_text(["rain on a roof"])[0]

    def run(self) -> None:
        index = xsearch.open(self.dir.name, root=self.dir.parent, device="cpu")
        index.use_encoder(self.encoder)  # the same weights, loaded once
        last, n = 0, 0
        while not self.stop.is_set():
            target = ("audio", "image", "text", "all")[n % 4]
            n += 1
            store = None
            try:
                if self.reopen:
                    store = Store.open(self.dir)
                else:
                    index.refresh()
                    store = index.store
                if store.generation < last:
                    self.errors.append(f"went back from generation {last} to {store.generation}")
                last = store.generation
                if self.reopen:
                    hits = search(store, self.query, target, k=500)
                else:
                    hits = index.search(text="rain on a roof", target=target, k=500)
                check_answer(store, hits, target)
                self.answers[store.generation] += 1
                time.sleep(0.02)  # leave the writers some of the CPU
            except (StoreCorrupt, OSError) as e:
                published = read_manifest(self.dir).generation
                mine = store.generation if store else -1
                self.retries.append((mine, published, f"{type(e).__name__}: {e}"))
            except Exception as e:  # reported by the test
                mine = store.generation if store else -1
                self.errors.append(f"generation {mine}: {type(e).__name__}: {e}")


def test_queries_while_an_ingest_and_rebuilds_publish(tmp_path, encoder):
    """Two readers search in a loop (one following with `Index.refresh`, one reopening with
    `Store.open`) while an ingest commits three generations and two `xsearch index rebuild`
    processes (IVF, then HNSW) publish theirs."""
    base = make_folder(tmp_path / "base", 4, seed=5)
    more = make_folder(tmp_path / "more", 9, seed=6)
    home = tmp_path / "home"
    ingest(find_files([base]), home / "idx", encoder, IngestOptions(workers=0))
    readers = [Reader(home / "idx", encoder, reopen) for reopen in (False, True)]
    for reader in readers:
        reader.start()
    env = {"XSEARCH_HOME": str(home)}
    try:
        time.sleep(0.3)
        options = IngestOptions(workers=0, commit_every=3)
        ingest(find_files([more]), home / "idx", encoder, options)
        for factory in ("IVF1,Flat", "HNSW16"):
            done = run_cli("index", "rebuild", "--index", "idx", "--factory", factory, env=env)
            assert done.returncode == 0, done.stderr
            time.sleep(0.3)  # let the readers answer from this generation
    finally:
        for reader in readers:
            reader.stop.set()
        for reader in readers:
            reader.join(timeout=60)
    final = Store.open(home / "idx")
    assert final.generation >= 6
    check_invariants(final)
    assert paths(final) == expected_paths(base, more)
    answers = sum(sum(r.answers.values()) for r in readers)
    retries = [x for r in readers for x in r.retries]
    errors = [x for r in readers for x in r.errors]
    # a reader's files vanish only once two newer generations are published
    bad_retries = [x for x in retries if x[1] < x[0] + 2]
    record("concurrency", "queries during an ingest and rebuilds", answers + len(retries),
           answers + len(retries) - len(errors) - len(bad_retries))  # fmt: skip
    assert not errors, errors[:5]
    assert not bad_retries, bad_retries[:5]
    for reader in readers:
        assert reader.answers[final.generation] > 0  # it followed to the end
        assert len(reader.answers) >= 2, reader.answers  # and answered from several
    print(f"answers {[dict(r.answers) for r in readers]}, retries {len(retries)}")


# --- the server during an ingest ----------------------------------------------------------------


def test_the_server_answers_from_one_generation_while_an_ingest_commits(
    tmp_path, encoder, monkeypatch
):
    """Searches and uploads at once through a real server while an ingest publishes three
    generations: every answer is exactly one generation's items, every hit's metadata right,
    the status generation never goes back, and the server ends on the last one."""
    base = make_folder(tmp_path / "base", 3, seed=7)
    more = make_folder(tmp_path / "more", 3, seed=8)
    home = tmp_path / "home"
    ingest(find_files([base]), home / "live", encoder, IngestOptions(workers=0))
    published: dict[int, dict[str, frozenset[int]]] = {}
    real_publish = Writer._publish

    def publish(writer, *args, **kwargs):
        store = real_publish(writer, *args, **kwargs)
        published[store.generation] = {
            m: frozenset(store.item_ids(m).tolist()) for m in ("audio", "image")
        }
        return store

    first = Store.open(home / "live")
    published[1] = {m: frozenset(first.item_ids(m).tolist()) for m in ("audio", "image")}
    monkeypatch.setattr(Writer, "_publish", publish)
    index = xsearch.open("live", root=home, device="cpu")
    index.use_encoder(encoder)
    picture = next(p for p in sorted(base.iterdir()) if p.suffix == ".png").read_bytes()
    ingesting = threading.Event()
    ingesting.set()

    def writer() -> None:
        try:
            options = IngestOptions(workers=0, commit_every=1)
            ingest(find_files([more]), home / "live", encoder, options)
        finally:
            ingesting.clear()

    def client(port: int, t: int) -> list[tuple[str, int, object]]:
        out, n = [], 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            while ingesting.is_set() or n < 4:
                n += 1
                kind = (t + n) % 4
                if kind == 0:
                    r = http.get("/api/status")
                    out.append(("status", r.status_code, r.json().get("generation")))
                elif kind == 1:
                    r = http.post(
                        "/api/search?target=image&k=500",
                        content=picture,
                        headers={"Content-Type": "image/png"},
                    )
                    out.append(("image", r.status_code, r.json()))
                else:
                    target = ("audio", "image")[kind - 2]
                    r = http.get("/api/search", params={"text": "x", "target": target, "k": 500})
                    out.append((target, r.status_code, r.json()))
        return out

    app = create_app(index, upload_dir=tmp_path / "uploads", full_paths=True)  # compared below
    (tmp_path / "uploads").mkdir()
    with serving(app) as port, ThreadPoolExecutor(7) as pool:
        clients = [pool.submit(client, port, t) for t in range(6)]
        time.sleep(0.5)
        pool.submit(writer).result(timeout=300)
        results = [c.result(timeout=300) for c in clients]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            status = http.get("/api/status").json()
    final = Store.open(home / "live")
    assert status["generation"] == final.generation == max(published) >= 4
    items = {row["item_id"]: row for row in final.items.to_pylist()}
    assets = {row["asset_id"]: row for row in final.assets.to_pylist()}
    answered: Counter[int] = Counter()
    problems, stale = [], []
    for outcome in results:
        last = 0
        for kind, code, body in outcome:
            if code == 400 and "missing" in body.get("error", ""):
                stale.append(f"{kind}: {body['error']}")  # see the end of the test
                continue
            if code != 200:
                problems.append(f"{kind}: HTTP {code} {body}")
                continue
            if kind == "status":
                if body < last:
                    problems.append(f"status went back from {last} to {body}")
                last = body
                continue
            hits = body["hits"]
            ids = frozenset(h["item_id"] for h in hits)
            modality = "image" if kind == "image" else kind
            gens = [g for g, sets in published.items() if sets[modality] == ids]
            if not gens:
                problems.append(f"{kind}: {len(ids)} hits match no generation's items")
                continue
            answered[gens[0]] += 1
            for h in hits:
                item, asset = items[h["item_id"]], assets[h["asset_id"]]
                if (item["asset_id"], item["start"], asset["path"]) != (
                    h["asset_id"],
                    h["start"],
                    h["path"],
                ):
                    problems.append(f"{kind}: hit {h['item_id']} has another item's metadata")
    total = sum(len(o) for o in results)
    record("concurrency", "server: searches and uploads during an ingest", total,
           total - len(problems) - len(stale))  # fmt: skip
    assert not problems, problems[:5]
    assert len(answered) >= 2, answered  # answers came from several generations
    print(f"server answers by generation: {dict(answered)} of {total} requests")
    # A request whose generation lost its files to two newer commits (the writer deletes
    # generation g's files when it publishes g+2) follows the index and retries.
    assert not stale, stale[:3]
