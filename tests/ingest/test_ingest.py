"""`xsearch ingest` end to end on generated media: items, incremental runs, renames, prune,
bad files, and the model guard."""

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


@pytest.fixture(scope="module")
def encoder(tiny_audioclip):
    return tiny_audioclip


def run(root: Path, index: Path, encoder, **options):
    opts = IngestOptions(workers=0, **options)
    return ingest(find_files([root]), index, encoder, opts)


def test_first_ingest_makes_every_item(tmp_path, encoder):
    root = make_media(tmp_path / "media")
    report = run(root, tmp_path / "idx", encoder, labels_from_folder=True)
    assert report.added == 5 and len(report.failed) == 2
    assert {Path(p).name for p, _ in report.failed} == {"broken.mp4", "empty.wav"}
    store = Store.open(tmp_path / "idx")
    check_invariants(store)
    assets = {Path(a["path"]).name: a for a in store.assets.to_pylist()}
    assert assets["walk.mp4"]["labels"] == ["dog", "dogs"]
    assert assets["sky.png"]["labels"] == ["rain"]
    items = store.items.to_pylist()
    storm = assets["storm.wav"]["asset_id"]
    windows = sorted((i["start"], i["end"]) for i in items if i["asset_id"] == storm)
    assert windows == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    walk = [i for i in items if i["asset_id"] == assets["walk.mp4"]["asset_id"]]
    assert sorted(i["modality"] for i in walk) == ["audio", "image", "text"]
    frame = next(i for i in walk if i["modality"] == "image")
    assert frame["start"] == pytest.approx(1.0, abs=0.15)  # the central frame of a 2 s video
    assert store.failures.num_rows == 2


def test_second_run_embeds_nothing_and_commits_nothing(tmp_path, encoder):
    root = make_media(tmp_path / "media")
    first = run(root, tmp_path / "idx", encoder)
    again = run(root, tmp_path / "idx", encoder)
    assert again.unchanged == 5 and again.added == 0 and again.items == {}
    assert again.generation == first.generation  # failed files are not retried either
    assert len(again.failed) == 2


def test_rename_keeps_embeddings_change_reembeds_prune_removes(tmp_path, encoder):
    root = make_media(tmp_path / "media")
    index = tmp_path / "idx"
    run(root, index, encoder)
    before = Store.open(index)
    old_vectors = dict(zip(*before.embeddings("audio")))

    shutil.move(root / "rain" / "drops.wav", root / "drops-renamed.wav")
    write_wav(root / "dogs" / "bark.wav", audio_samples(seconds=2.0)["tone_440hz.wav"])
    (root / "rain" / "sky.png").unlink()
    report = run(root, index, encoder, prune=True)
    assert (report.renamed, report.changed, report.removed) == (1, 1, 1)
    assert report.items == {"audio": 1}

    store = Store.open(index)
    check_invariants(store)
    paths = {Path(a["path"]).name for a in store.assets.to_pylist()}
    assert "drops-renamed.wav" in paths and "drops.wav" not in paths and "sky.png" not in paths
    ids, vectors = store.embeddings("audio")
    kept = [i for i in ids if i in old_vectors]
    assert len(kept) == len(ids) - 1  # only the changed file got a new vector
    for i, v in zip(ids, vectors):
        if i in old_vectors:
            assert np.array_equal(v, old_vectors[i])
    assert store.faiss_index("image").ntotal == 1  # the video frame; the picture is gone


@pytest.mark.slow  # loads a second model
def test_another_model_cannot_ingest_into_the_index(tmp_path, encoder):
    root = make_media(tmp_path / "media")
    run(root, tmp_path / "idx", encoder)
    other = load_encoder("random", config="audioclip", device="cpu")
    with pytest.raises(UsageError, match="was built with"):
        run(root, tmp_path / "idx", other)


@pytest.mark.slow  # runs the command twice
def test_cli_ingest_with_worker_processes_and_status(tmp_path):
    root = make_media(tmp_path / "media")
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    args = ["-w", "random", "--config", "audioclip-tiny", "--index", "t", "--json"]
    result = run_cli("ingest", str(root), *args, "--workers", "2", "--timeout", "20", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 5 and len(report["failed"]) == 2
    assert all("\n" not in f["reason"] for f in report["failed"])

    status = run_cli("status", "--index", "t", "--json", "--failures", env=env)
    facts = json.loads(status.stdout)
    assert facts["assets"] == 5 and facts["generation"] == 1
    assert facts["items"] == {"image": 2, "audio": 6, "text": 1}
    assert facts["model"]["config"] == "audioclip-tiny"
    assert {Path(f["path"]).name for f in facts["failed"]} == {"broken.mp4", "empty.wav"}


@pytest.mark.slow  # runs the command five times
def test_cli_errors_are_one_line(tmp_path):
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    result = run_cli("status", "--index", "nope", env=env)
    assert result.returncode == 2 and "no index" in result.stderr
    result = run_cli("ingest", str(tmp_path / "missing"), "-w", "random", env=env)
    assert result.returncode == 2 and "no such file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # runs the command about 15 times
def test_cli_query_after_ingest(tmp_path):
    root = make_media(tmp_path / "media")
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    built = run_cli("ingest", str(root), "-w", "random", "--config", "audioclip-tiny",
                    "--workers", "0", env=env)  # fmt: skip
    assert built.returncode == 0, built.stderr
    result = run_cli("query", "--text", "dog", "--target", "audio", "-k", "4", "--json", env=env)
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    keys = {"rank", "score", "path", "modality", "start", "end", "labels", "asset_id", "item_id"}
    keys |= {"cosine", "kind", "generation"}
    assert all(set(h) == keys and h["modality"] == "audio" for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]
    # an indexed file queried against its own modality finds itself first
    sky = root / "rain" / "sky.png"
    result = run_cli("query", "--image", str(sky), "--target", "image", "--json", env=env)
    assert json.loads(result.stdout.splitlines()[0])["path"] == str(sky.resolve())
    sky_hit = json.loads(result.stdout.splitlines()[0])
    assert sky_hit["cosine"] == pytest.approx(1.0, abs=1e-4)

    def query(*args: str) -> list[dict]:
        done = run_cli("query", *args, "--json", env=env)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    videos = query("--text", "dog", "--target", "video")
    assert {(h["kind"], Path(h["path"]).name) for h in videos} == {("video", "walk.mp4")}
    everything = query("--text", "dog", "--target", "all", "-k", "20")
    assert len({h["asset_id"] for h in everything}) == len(everything) == 5  # one per file
    assert {"image", "audio"} <= {h["modality"] for h in everything}
    liked = query("--like", str(sky_hit["item_id"]), "--target", "image")
    assert liked[0]["item_id"] == sky_hit["item_id"]
    unliked = query("--like", str(sky_hit["item_id"]), "--target", "image", "--exclude-self")
    assert sky_hit["asset_id"] not in {h["asset_id"] for h in unliked}
    assert query("--text", "dog", "--min-score", "1000") == []
    mixed = query("--text", "dog^2", "--image", f"{sky}^-0.5", "--target", "audio", "-k", "2")
    assert len(mixed) == 2
    for args, needle in (
        (["--text", "dog^0"], "cancel out"),
        (["--like", "abc"], "item id"),
        (["--like", "99999"], "no item 99999"),
        (["--text", "x", "--target", "sound"], "--target: unknown target 'sound'"),
        (["--text", "x", "-k", "0"], "-k: must be at least 1"),
        (["--text", "x", "--where", "nonsense(("], "--where: bad filter"),
        (["--text", "x", "--index", "nope"], "no index"),
        ([], "give a query"),
        (["--audio", str(root / "broken.mp4")], "broken.mp4"),
    ):
        bad = run_cli("query", *args, env=env)
        assert bad.returncode != 0 and needle in bad.stderr and "Traceback" not in bad.stderr
        # one error line after the random-weights banner, never a usage box
        assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
        errors = [line for line in bad.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and "Usage" not in bad.stderr, bad.stderr


@pytest.mark.slow  # runs the command three times
def test_an_index_built_with_a_weights_file_is_queried_with_it(tmp_path, tiny_checkpoint):
    """Every command that embeds takes the weights it was built with (no cache, no env)."""
    root = make_media(tmp_path / "media")
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    weights = ["--weights", str(tiny_checkpoint)]
    built = run_cli("ingest", str(root), *weights, "--workers", "0", env=env)
    assert built.returncode == 0, built.stderr
    found = run_cli("query", "--text", "rain", "--json", *weights, env=env)
    assert found.returncode == 0 and found.stdout.strip(), found.stderr
    other = run_cli("query", "--text", "rain", "--weights", "random", env=env)
    assert other.returncode != 0 and "give the weights it was built with" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
