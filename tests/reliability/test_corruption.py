"""Corrupt artefacts: each kind of file an index keeps, emptied, cut to 16 bytes or to half,
with flipped bytes, or deleted. Opening, querying and ingesting must then fail with one line
naming the file and the fix, or give exactly the results of the undamaged index; never a
traceback, a signal or other results. `xsearch verify` must report the damage, and `--repair`
restore a healthy index: the same one when the damaged file can be re-derived, else the
previous generation, saying what must be ingested again.

The matrix runs in one child process (one model load for every case), so that a crash in
native code shows as that case's failure instead of killing the test run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.corruption import CASES, case_id, cls, damage_file, damaged_path
from tests.helpers.tally import record

pytestmark = pytest.mark.slow  # a matrix of 61 damaged indexes, in a child process


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("corruption")
    out = workdir / "results.jsonl"
    code = (
        "import sys; from pathlib import Path; "
        "from tests.helpers.corruption import run_matrix; "
        "run_matrix(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(workdir), str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    facts = lines[0]["facts"] if lines else None
    results = {r["case"]: r for r in lines[1:]}
    begun = [line[6:] for line in child.stderr.splitlines() if line.startswith("BEGIN ")]
    crashed = None
    if child.returncode != 0:
        crashed = (begun[-1] if begun else "building the index", child.returncode, child.stderr)
    return {"workdir": workdir, "facts": facts, "results": results, "crashed": crashed}


def _one_line_naming(message: str, path: Path) -> None:
    """One line that names the damaged file and the command that repairs its index."""
    assert "\n" not in message, message
    assert str(path) in message, (path, message)
    assert "run `xsearch verify --repair --index idx`" in message, message


def _without_ids(hits: list) -> list:
    return [[row[:-1] for row in query] for query in hits]


@pytest.mark.parametrize(("kind", "damage"), CASES, ids=[case_id(*c) for c in CASES])
def test_corruption(matrix, kind, damage):
    case = case_id(kind, damage)
    crashed = matrix["crashed"]
    assert matrix["facts"] is not None, f"the index could not be built: {crashed}"
    if case not in matrix["results"]:
        pytest.fail(f"not run: the matrix process died at {crashed[0]!r} (status {crashed[1]})")
    r, facts = matrix["results"][case], matrix["facts"]
    kind_class = cls(kind)
    base = Path(facts["base"])
    relative = damaged_path(base, kind).relative_to(base)
    folder = matrix["workdir"] / "cases" / f"{CASES.index((kind, damage)):02d}"

    def named(outcome: dict, directory: Path) -> None:
        assert "crash" not in outcome, outcome.get("traceback")
        if "error" in outcome:
            _one_line_naming(outcome["error"], directory / relative)

    # Open and query: one line naming the file, or exactly the undamaged results.
    named(r["query"], folder / "idx")
    if "ok" in r["query"]:
        assert r["query"]["ok"] == facts["baseline"]
    if kind_class == "lock":
        assert r["query"] == {"ok": facts["baseline"]}
    # Ingest: the same, and what it published answers like the undamaged index plus the file.
    named(r["ingest"], folder / "ingest" / "idx")
    if "ok" in r["ingest"]:
        named(r["after_ingest"], folder / "ingest" / "idx")
        if "ok" in r["after_ingest"]:
            assert r["after_ingest"]["ok"] == facts["after_ingest"]
    if kind_class == "lock":
        assert r["ingest"] == {"ok": 1}
    # Verify reports the damaged file; repair restores a healthy index.
    assert r["verify"]["healthy"] == (kind_class == "lock"), r["verify"]
    if kind_class != "lock":
        assert [file for file, _, _ in r["verify"]["bad"]] == [str(relative)], r["verify"]
    assert "ok" in r["repair"], r["repair"]
    repair = r["repair"]["ok"]
    assert repair["healthy"], repair
    assert r["invariants"] == {"ok": "ok"}, r["invariants"]
    lost = 0
    if kind_class == "source":  # back to generation 1; the lost file comes back by ingesting
        lost = facts["gen2_items"] - facts["gen1_items"]
        assert repair["lost_items"] == lost
        assert any("must be ingested again" in line for line in repair["lost"]), repair
        assert r["after_repair"] == {"ok": facts["gen1"]}
        assert "ok" in r["reingest"], r["reingest"]
        assert _without_ids(r["after_reingest"]["ok"]) == _without_ids(facts["baseline"])
    else:
        assert repair["lost"] == [] and repair["lost_items"] == 0, repair
        assert r["after_repair"] == {"ok": facts["baseline"]}
    if kind_class == "lock":
        assert repair["actions"] == ["nothing to repair"]
    record("corruptions", case, tried=1, survived=1, lost_items=lost)


# --- the paths FAISS files are read by ---------------------------------------------------------


def test_a_damaged_faiss_file_never_reaches_faiss_on_any_path(matrix, tmp_path, monkeypatch):
    """Search (API and server) and evaluation verify the file first; a commit (which writes a
    segment of its own) and a rebuild do not read it at all."""
    import faiss
    import numpy as np
    from starlette.testclient import TestClient

    from xsearch.api import Index
    from xsearch.eval.retrieval import Evaluation
    from xsearch.server.app import create_app
    from xsearch.store.manifest import StoreCorrupt
    from xsearch.store.rebuild import rebuild_indexes
    from xsearch.store.store import Changes, Store, Writer

    directory = tmp_path / "idx"
    shutil.copytree(matrix["facts"]["base"], directory)
    damaged = damaged_path(directory, "faiss audio")
    damage_file(damaged, "flipped")
    bad = damaged.read_bytes()
    seen: list[bytes] = []
    deserialize, read_index = faiss.deserialize_index, faiss.read_index

    def spy_deserialize(data, *rest):
        seen.append(np.asarray(data).tobytes())
        return deserialize(data, *rest)

    def spy_read_index(source, *rest):
        seen.append(Path(source).read_bytes() if isinstance(source, (str, Path)) else b"?")
        return read_index(source, *rest)

    monkeypatch.setattr(faiss, "deserialize_index", spy_deserialize)
    monkeypatch.setattr(faiss, "read_index", spy_read_index)
    store = Store.open(directory)
    like = int(store.item_ids("audio")[0])
    with pytest.raises(StoreCorrupt, match="checksum mismatch"):
        Index.for_store(store).search(like=like, target="audio")
    with pytest.raises(StoreCorrupt, match="checksum mismatch"):
        Evaluation(Index.for_store(Store.open(directory))).pair("audio", "audio")
    client = TestClient(create_app(Index.for_store(Store.open(directory))))
    reply = client.get("/api/search", params={"like": like, "target": "audio"})
    assert reply.status_code >= 400 and "checksum mismatch" in reply.json()["error"]
    model = Store.open(directory).manifest.model
    with Writer(directory, model) as writer:
        changes = Changes()
        ids = writer.allocate_items(1)
        changes.add_vectors("audio", ids, np.ones((1, 1024), np.float32) / 32)
        writer.commit(changes)
    assert rebuild_indexes(directory, "Flat").faiss_index("audio").ntotal > 0
    assert bad not in seen


# --- the command line --------------------------------------------------------------------------


def _case_copy(matrix, tmp_path: Path, kind: str, how: str, source: str = "base") -> Path:
    home = tmp_path / "home"
    source_dir = Path(matrix["facts"]["base"]).parent / source
    shutil.copytree(source_dir, home / "idx")
    damage_file(damaged_path(home / "idx", kind), how)
    return home


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_cli_ingest_into_a_damaged_index_is_one_line(matrix, tmp_path):
    """A commit never reads older segments' indexes: the ingest adds its segment; the next
    query that needs the damaged file stops in one line naming it."""
    home = _case_copy(matrix, tmp_path, "faiss audio", "flipped")
    env = {"XSEARCH_HOME": str(home)}
    args = ["--index", "idx", "-w", "random", "--config", "audioclip-tiny", "--workers", "0"]
    result = run_cli("ingest", matrix["facts"]["late"], *args, env=env)
    assert result.returncode == 0, result.stderr
    result = run_cli("query", "--index", "idx", "--text", "rain", "--target", "audio", env=env)
    assert result.returncode == 1, result.stderr  # an error, not a signal (-11, 139)
    (line,) = _errors(result.stderr)
    _one_line_naming(line, damaged_path(home / "idx", "faiss audio"))


def test_cli_status_with_a_damaged_manifest_is_one_line(matrix, tmp_path):
    home = _case_copy(matrix, tmp_path, "manifest", "half")
    result = run_cli("status", "--index", "idx", env={"XSEARCH_HOME": str(home)})
    assert result.returncode == 1
    (line,) = _errors(result.stderr)
    _one_line_naming(line, home / "idx" / "manifest.json")


def test_cli_verify_reports_and_repairs(matrix, tmp_path):
    home = _case_copy(matrix, tmp_path, "reference audio", "half")
    env = {"XSEARCH_HOME": str(home)}
    damaged = damaged_path(home / "idx", "reference audio").relative_to(home / "idx")
    result = run_cli("verify", "--index", "idx", env=env)
    assert result.returncode == 1
    assert f"PROBLEM {damaged} (reference/audio): size mismatch" in result.stdout
    assert "run `xsearch verify --repair --index idx`" in result.stderr
    result = run_cli("verify", "--index", "idx", "--json", env=env)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[-1]["healthy"] is False and rows[-1]["problems"] == 1
    assert [r["file"] for r in rows[:-1] if not r["ok"]] == [str(damaged)]
    result = run_cli("verify", "--index", "idx", "--repair", env=env)
    assert result.returncode == 0, result.stderr
    assert "repaired: rebuilt the FAISS indexes (Flat)" in result.stdout
    result = run_cli("verify", "--index", "idx", env=env)
    assert result.returncode == 0 and "idx: healthy" in result.stdout


def test_cli_repair_says_what_cannot_be_saved(matrix, tmp_path):
    """A single generation whose items are damaged: nothing to fall back to."""
    home = tmp_path / "home"
    shutil.copytree(Path(matrix["facts"]["base"]).parent / "gen1", home / "idx")
    manifest = json.loads((home / "idx" / "manifest.json").read_text())
    damage_file(home / "idx" / manifest["files"]["seg/1/items"]["path"], "flipped")
    result = run_cli("verify", "--index", "idx", "--repair", env={"XSEARCH_HOME": str(home)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lost = [line for line in result.stderr.splitlines() if line.startswith("lost:")]
    assert len(lost) == 1 and "cannot repair: data/items-g1.parquet (checksum mismatch)" in lost[0]
    assert "ingest the media again" in lost[0]
    record("corruptions", "items of the only generation (unrepairable)", tried=1, survived=1,
           lost_items=matrix["facts"]["gen1_items"])  # fmt: skip


def test_repair_keeps_the_type_of_an_on_disk_index(tmp_path):
    """Damaged on-disk lists: the index file still tells the type, rebuilt as it was."""
    from tests.helpers.store import check_invariants, commit_asset
    from xsearch.store.rebuild import rebuild_indexes
    from xsearch.store.repair import repair_index
    from xsearch.store.store import Store
    from xsearch.store.verify import verify_index

    directory = tmp_path / "idx"
    commit_asset(directory, "/m/a.wav", 300, seed=4)
    rebuild_indexes(directory, "IVF4,Flat", on_disk=True, train_sample=300)
    lists = directory / Store.open(directory).manifest.files["seg/1/ivfdata/audio"].path
    damage_file(lists, "flipped")
    verdict = verify_index(directory)
    assert [(c.role, c.problem) for c in verdict.checks if not c.ok] == [
        ("seg/1/ivfdata/audio", "checksum mismatch")
    ]
    repaired = repair_index(directory)
    assert repaired.healthy and repaired.lost == []
    assert "(IVF4,Flat, on disk)" in repaired.actions[0]
    store = Store.open(directory)
    assert "seg/1/ivfdata/audio" in store.manifest.files
    check_invariants(store)
    record("corruptions", "ivfdata (on-disk lists): flipped", tried=1, survived=1)


def test_damaged_embeddings_are_recreated_for_live_items_only(tmp_path):
    """A damaged embeddings file of a segment whose file was partly removed: its live items'
    vectors come back from the exact index, the removed ones' do not."""
    from tests.helpers.store import MODEL, add_asset, check_invariants
    from xsearch.store.repair import repair_index
    from xsearch.store.store import Changes, Store, Writer

    directory = tmp_path / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        gone = add_asset(writer, changes, "/m/gone.wav", 3, seed=1)
        add_asset(writer, changes, "/m/kept.wav", 2, seed=2)
        writer.commit(changes)
    with Writer(directory, MODEL) as writer:
        writer.commit(Changes(removed_assets={gone}))
    files = Store.open(directory).manifest.files
    damage_file(directory / files["seg/1/embeddings/audio"].path, "half")
    repaired = repair_index(directory)
    assert repaired.healthy and repaired.lost == [], repaired.actions
    assert "re-created the 2 audio vectors" in repaired.actions[0], repaired.actions
    store = Store.open(directory)
    assert store.embeddings("audio")[0].tolist() == [3, 4]
    check_invariants(store)
