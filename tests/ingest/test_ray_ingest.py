"""`xsearch ingest --ray` on a local Ray instance (2 CPUs, loopback only): the same index as a
local ingest, incremental runs, killed workers, and the CLI. Ray is the optional extra
the `ray` extra: without it these tests skip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_cli
from tests.helpers.media_tree import make_media
from tests.helpers.store import check_invariants
from xsearch.errors import UsageError
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.models import load_encoder
from xsearch.samples import audio_samples, write_wav
from xsearch.store.store import Store

pytestmark = pytest.mark.slow  # starts a Ray cluster

RAY_MISSING = "ray is not installed: pip install -e '.[ray]' (the optional Ray extra)"
TINY = ["-w", "random", "--config", "audioclip-tiny"]


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module: 2 CPUs, loopback only, no dashboard, no usage
    statistics. The environment it needs is restored afterwards."""
    with pytest.MonkeyPatch.context() as env:
        # What xsearch.ingest.ray_backend.import_ray sets before Ray's first import.
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setenv("RAY_AUTH_MODE", "token")
        env.delenv("RAY_ADDRESS", raising=False)
        ray = pytest.importorskip("ray", reason=RAY_MISSING)
        from xsearch.ingest.ray_backend import init_ray

        init_ray(num_cpus=2)
        assert ray.cluster_resources()["CPU"] == 2
        yield ray
        ray.shutdown()


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("random", config="audioclip-tiny", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return make_media(tmp_path_factory.mktemp("ray") / "media")


@pytest.fixture(scope="module")
def local(tmp_path_factory, media, encoder) -> dict:
    """The reference: a local ingest of `media`."""
    index = tmp_path_factory.mktemp("local") / "idx"
    ingest(find_files([media]), index, encoder, IngestOptions(workers=0))
    return snapshot(index)


@pytest.fixture
def backend(ray_instance):
    """A RayBackend on the module's instance; its embedding actors serve one test's runs."""
    from xsearch.ingest.ray_backend import RayBackend

    with RayBackend() as backend:
        yield backend


def ray_ingest(root: Path, index: Path, encoder, backend, **options):
    return ingest(find_files([root]), index, encoder, IngestOptions(**options), backend=backend)


def snapshot(index: Path) -> dict:
    """An index's content by name rather than by id (ids follow the order files finish in):
    assets by path, items by (path, modality, start, text), failed files."""
    store = Store.open(index)
    check_invariants(store)
    assets = {a["asset_id"]: a for a in store.assets.to_pylist()}
    vectors = {}
    for modality in ("image", "audio", "text"):
        vectors.update(zip(*store.embeddings(modality)))
    items = {}
    for item in store.items.to_pylist():
        path = assets[item["asset_id"]]["path"]
        key = (path, item["modality"], item["start"], item["text"])
        assert key not in items
        items[key] = (item["end"], vectors[item["item_id"]])
    return {
        "assets": {
            a["path"]: (a["kind"], a["labels"], a["content_hash"], a["bytes"], a["duration"])
            for a in assets.values()
        },
        "items": items,
        "failures": {f["path"]: f["reason"] for f in store.failures.to_pylist()},
    }


def assert_same(got: dict, want: dict) -> None:
    """Same assets, items and failed files; vectors equal to float tolerance."""
    assert got["assets"] == want["assets"]
    assert got["failures"] == want["failures"] and len(got["failures"]) == 2
    assert got["items"].keys() == want["items"].keys()
    for key, (end, vector) in want["items"].items():
        assert got["items"][key][0] == end, key
        np.testing.assert_allclose(got["items"][key][1], vector, atol=1e-5, err_msg=str(key))


def test_ray_ingest_equals_a_local_ingest(tmp_path, backend, encoder, media, local):
    report = ray_ingest(media, tmp_path / "idx", encoder, backend)
    assert (report.added, report.generation) == (5, 1)
    assert report.items == {"image": 2, "audio": 6, "text": 1}
    assert {Path(p).name for p, _ in report.failed} == {"broken.mp4", "empty.wav"}
    assert_same(snapshot(tmp_path / "idx"), local)


def test_actors_holding_another_model_are_refused(tmp_path, backend, media):
    other = load_encoder("random", config="audioclip-tiny", device="cpu", batch_size=4, seed=1)
    with pytest.raises(UsageError, match="do not hold this process's model"):
        ray_ingest(media, tmp_path / "idx", other, backend)  # the actors' random seed is 0
    assert Store.open(tmp_path / "idx").generation == 0


def test_incremental_ray_runs(tmp_path, backend, encoder, media):
    root = tmp_path / "media"
    shutil.copytree(media, root)
    index = tmp_path / "idx"
    first = ray_ingest(root, index, encoder, backend, commit_every=3)
    assert first.generation == 3  # after 3 and 6 files, and at the end
    again = ray_ingest(root, index, encoder, backend)
    assert again.generation == first.generation  # nothing committed, failures not retried
    assert (again.unchanged, again.added, again.items, len(again.failed)) == (5, 0, {}, 2)

    old = dict(zip(*Store.open(index).embeddings("audio")))
    shutil.move(root / "rain" / "drops.wav", root / "drops-renamed.wav")
    write_wav(root / "dogs" / "bark.wav", audio_samples(seconds=2.0)["tone_440hz.wav"])
    report = ray_ingest(root, index, encoder, backend, prune=True)
    assert (report.renamed, report.changed, report.removed, report.items) == (1, 1, 0, {"audio": 1})
    store = Store.open(index)
    check_invariants(store)
    paths = {Path(a["path"]).name for a in store.assets.to_pylist()}
    assert "drops-renamed.wav" in paths and "drops.wav" not in paths
    ids, vectors = store.embeddings("audio")
    kept = [i for i in ids.tolist() if i in old]
    assert len(kept) == len(ids) - 1  # the renamed file kept its vectors; bark.wav is new
    for item_id, vector in zip(ids.tolist(), vectors):
        if item_id in old:
            assert np.array_equal(vector, old[item_id])


def test_killed_workers_are_retried_and_lose_nothing(
    tmp_path, monkeypatch, ray_instance, encoder, media, local
):
    from xsearch.ingest.ray_backend import KILL_ONCE_ENV, RayBackend

    kills = tmp_path / "kills"
    kills.mkdir()
    monkeypatch.setenv(KILL_ONCE_ENV, str(kills))
    with RayBackend() as backend:
        report = ray_ingest(media, tmp_path / "idx", encoder, backend)
    # the first decode task's worker and the embedding actor (on its first batch) were killed
    assert sorted(p.name for p in kills.iterdir()) == ["decode", "embed"]
    assert (report.added, len(report.failed)) == (5, 2)
    assert_same(snapshot(tmp_path / "idx"), local)


def test_cli_ingest_on_ray(tmp_path, ray_instance, media, local):
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    # --ray alone starts (and stops) a local instance of its own
    result = run_cli("ingest", str(media), "--ray", *TINY, "--index", "t", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 5 and len(report["failed"]) == 2
    assert_same(snapshot(tmp_path / "home" / "t"), local)

    # --ray-address joins a running cluster (the module's instance), whose workers die once:
    # Ray's notices of it go to stderr, stdout stays one JSON line
    from xsearch.ingest.ray_backend import KILL_ONCE_ENV

    (tmp_path / "kills").mkdir()
    address = ray_instance.get_runtime_context().gcs_address
    args = ["--ray-address", address, "--ray-actors", "1", *TINY, "--json"]
    env_kill = {**env, KILL_ONCE_ENV: str(tmp_path / "kills")}
    joined = run_cli("ingest", str(media), *args, "--index", "u", env=env_kill)
    assert joined.returncode == 0, joined.stderr
    assert sorted(p.name for p in (tmp_path / "kills").iterdir()) == ["decode", "embed"]
    assert json.loads(joined.stdout)["added"] == 5
    assert_same(snapshot(tmp_path / "home" / "u"), local)

    status = run_cli("status", "--index", "u", "--json", env=env)
    assert json.loads(status.stdout)["items"] == {"image": 2, "audio": 6, "text": 1}


def test_cli_without_ray_says_how_to_install_it(tmp_path, media):
    fake = tmp_path / "site" / "ray"  # a `ray` that cannot be imported shadows the real one
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\")\n")
    env = {"XSEARCH_HOME": str(tmp_path / "home"), "PYTHONPATH": str(fake.parent)}
    result = run_cli("ingest", str(media), "--ray", *TINY, env=env)
    assert result.returncode == 2
    expected = "error: install the ray extra: pip install -e '.[ray]' in the xsearch checkout"
    assert result.stderr.strip() == expected

    result = run_cli("ingest", str(media), "--ray-actors", "2", *TINY, env=env)
    assert result.returncode == 2 and "--ray-actors" in result.stderr
    assert "on Ray only" in result.stderr and len(result.stderr.strip().splitlines()) == 1
