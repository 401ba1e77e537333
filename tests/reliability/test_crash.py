"""Crash safety: an ingest SIGKILLed at each step of its commit leaves the previous or the new
generation, exactly, and a re-run converges to the same index as an uninterrupted run."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.crash import PUBLISHED_FROM, STEPS, snapshot
from tests.helpers.tally import record
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.samples import audio_samples, image_samples, write_video, write_wav

pytestmark = pytest.mark.slow  # a process killed at each commit step


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, tiny_audioclip):
    """Generation 1 holds two files; the crashing run adds a video (frame, sound and sidecar
    text, so every modality's files are written) and an audio file."""
    base = tmp_path_factory.mktemp("crash")
    media = base / "media"
    media.mkdir()
    waves = audio_samples(seconds=1.0)
    write_wav(media / "a.wav", waves["tone_440hz.wav"])
    image_samples((64, 48))["red_circle.png"].save(media / "b.png")
    encoder = tiny_audioclip
    options = IngestOptions(workers=0)
    ingest(find_files([media]), base / "gen1", encoder, options)

    write_video(media / "c.mp4", seconds=1.0)
    (media / "c.txt").write_text("an orange sunset")
    write_wav(media / "d.wav", waves["siren.wav"])
    shutil.copytree(base / "gen1", base / "gen2")
    ingest(find_files([media]), base / "gen2", encoder, options)
    return base, media, encoder, snapshot(base / "gen1"), snapshot(base / "gen2")


def test_the_new_generation_touches_every_modality(scenario):
    _, _, _, old, new = scenario
    assert new["generation"] == old["generation"] + 1
    assert all(new["ntotal"][m] > old["ntotal"][m] for m in ("audio", "image", "text"))


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_commit_step(scenario, tmp_path, step):
    base, media, encoder, old, new = scenario
    home = tmp_path / "home"
    shutil.copytree(base / "gen1", home / "idx")
    env = {"XSEARCH_HOME": str(home), "XSEARCH_CRASH_AT": step}
    args = ["--index", "idx", "-w", "random", "--config", "audioclip-tiny", "--workers", "0"]
    result = run_cli("ingest", str(media), *args, env=env)
    assert result.returncode == -9, result.stderr  # killed at the step, not finished

    after = snapshot(home / "idx")
    assert after == (new if STEPS.index(step) >= PUBLISHED_FROM else old)

    report = ingest(find_files([media]), home / "idx", encoder, IngestOptions(workers=0))
    assert snapshot(home / "idx")["items"] == new["items"]
    assert snapshot(home / "idx")["assets"] == new["assets"]
    assert not report.failed
    leftovers = {p.name for p in (home / "idx").glob(".*")}
    assert leftovers == set()
    assert json.loads((home / "idx" / "manifest.json").read_text())["generation"] >= 2
    record("crash points", step, tried=1, survived=1)  # reached only when every check held


# Every write, fsync and rename of a merge (`xsearch index compact`), in order: the merged
# segment's tables and indexes; of the embeddings only the audio of the first segment, half of
# whose rows are deleted (the other files are taken over as they are).
MERGE_STEPS = [
    "merge-start",
    "write-assets",
    "write-items",
    "write-faiss-image",
    "write-embeddings-audio",
    "write-faiss-audio",
    "write-faiss-text",
    "fsync-data",
    "manifest-written",
    "manifest-renamed",
    "publish",
]


@pytest.fixture(scope="module")
def segmented(tiny_audioclip, tmp_path_factory):
    """Three commits: three files, then a video with its caption and an audio file, then one
    file of the first commit deleted (pruned): segments with every modality, and a deletion
    marker for the merge to drop."""
    work = tmp_path_factory.mktemp("merge")
    media = work / "media"
    media.mkdir()
    waves = audio_samples(seconds=1.0)
    write_wav(media / "a.wav", waves["tone_440hz.wav"])
    write_wav(media / "e.wav", waves["siren.wav"][::-1].copy())
    image_samples((64, 48))["red_circle.png"].save(media / "b.png")
    options = IngestOptions(workers=0, prune=True)
    ingest(find_files([media]), work / "idx", tiny_audioclip, options)
    write_video(media / "c.mp4", seconds=1.0)
    (media / "c.txt").write_text("an orange sunset")
    write_wav(media / "d.wav", waves["siren.wav"])
    ingest(find_files([media]), work / "idx", tiny_audioclip, options)
    shutil.copytree(work / "idx", work / "two-commits")
    (media / "a.wav").unlink()
    ingest(find_files([media]), work / "idx", tiny_audioclip, options)
    before = snapshot(work / "idx")
    assert len(before["assets"]) == 4
    return work, before


def test_kill_while_a_commit_marks_deletions(segmented, tmp_path):
    """A pruning ingest killed as it writes the deletion marker of an older segment."""
    work, after = segmented
    home = tmp_path / "home"
    shutil.copytree(work / "two-commits", home / "idx")
    before = snapshot(home / "idx")
    args = ["--index", "idx", "-w", "random", "--config", "audioclip-tiny", "--workers", "0"]
    env = {"XSEARCH_HOME": str(home)}
    killed = run_cli("ingest", str(work / "media"), *args, "--prune",
                     env={**env, "XSEARCH_CRASH_AT": "write-deleted"})  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert snapshot(home / "idx") == before
    done = run_cli("ingest", str(work / "media"), *args, "--prune", env=env)
    assert done.returncode == 0, done.stderr
    assert {k: snapshot(home / "idx")[k] for k in ("assets", "items", "ntotal")} == {
        k: after[k] for k in ("assets", "items", "ntotal")
    }
    record("crash points", "write-deleted", tried=1, survived=1)


@pytest.mark.parametrize("step", MERGE_STEPS)
def test_kill_at_each_step_of_a_merge(segmented, tmp_path, step):
    from xsearch.store.store import Store

    work, before = segmented
    home = tmp_path / "home"
    shutil.copytree(work / "idx", home / "idx")
    env = {"XSEARCH_HOME": str(home), "XSEARCH_CRASH_AT": step}
    result = run_cli("index", "compact", "--full", "--index", "idx", env=env)
    assert result.returncode == -9, result.stderr  # killed at the step, not finished

    after = snapshot(home / "idx")  # the old segments or the merged one: the same content
    assert {k: after[k] for k in ("assets", "items", "ntotal")} == {
        k: before[k] for k in ("assets", "items", "ntotal")
    }
    merged = MERGE_STEPS.index(step) >= MERGE_STEPS.index("manifest-renamed")
    assert (len(Store.open(home / "idx").manifest.segments) == 1) == merged

    done = run_cli("index", "compact", "--full", "--index", "idx", "--json", env={
        "XSEARCH_HOME": str(home)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["segments"] == 1
    final = Store.open(home / "idx")
    assert all(s.deleted == 0 for s in final.manifest.segments)
    assert snapshot(home / "idx")["items"] == before["items"]
    verify = run_cli("verify", "--index", "idx", env={"XSEARCH_HOME": str(home)})
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not {p.name for p in (home / "idx").glob(".*")}
    record("crash points", f"merge {step}", tried=1, survived=1)
