"""Disk full: an ingest into a file system that fills up mid-commit fails with one clear line,
leaves the previous generation intact and openable, and once there is room again the next
ingest removes what the failed one left and completes.

The index lives on a real small file system: a 4 MiB tmpfs (or, where tmpfs cannot be mounted,
a loop-mounted ext4 image), which needs root; elsewhere the tests are skipped, saying why.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.crash import snapshot
from tests.helpers.media_factory import mixed_folder
from tests.helpers.tally import record
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.store.manifest import MANIFEST
from xsearch.store.names import generation_of, manifest_copy_generation
from xsearch.store.store import DATA, Store

pytestmark = pytest.mark.slow  # fills a small file system

SIZE_MB = 4


def _mount(mountpoint: Path, scratch: Path) -> str | None:
    """Mount a small file system at `mountpoint`; None, or why it could not be done."""
    if os.geteuid() != 0:
        return "mounting a small file system needs root"
    tmpfs = ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0755", "tmpfs", str(mountpoint)]
    done = subprocess.run(tmpfs, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    why = done.stderr.strip()
    image = scratch / "small.ext4"
    try:
        with open(image, "wb") as f:
            f.truncate(SIZE_MB * 2 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(
            ["mount", "-o", "loop", str(image), str(mountpoint)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        return f"tmpfs: {why}; loop ext4: {detail.decode(errors='replace').strip() or e}"
    return None


@pytest.fixture
def small_fs(tmp_path):
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    why = _mount(mountpoint, tmp_path)
    if why:
        pytest.skip(f"no small file system to fill: {why}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True)
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


@pytest.fixture(scope="module")
def encoder(tiny_audioclip):
    return tiny_audioclip


def make_folder(folder: Path, n: int, seed: int) -> Path:
    return mixed_folder(folder, n, seed, sidecar_every=1)  # every sound with a text


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mountpoint: Path, leave: int) -> Path:
    """Fill the file system but `leave` bytes (about: blocks round it)."""
    filler = mountpoint / "filler"
    filler.unlink(missing_ok=True)
    want = max(0, free_bytes(mountpoint) - leave)
    chunk = b"\xa5" * (1 << 16)
    with open(filler, "wb") as f:
        try:
            while want > 0:
                want -= f.write(chunk[: min(len(chunk), want)])
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def leftovers(directory: Path) -> list[str]:
    """Files no published generation needs: temporary manifests, and data files of
    generations after the published one or not in it."""
    store = Store.open(directory)
    used = {e.path for e in store.manifest.files.values()}
    out = [p.name for p in directory.glob(".*.tmp-*")]
    for path in (directory / DATA).iterdir():
        gen = generation_of(path.name)
        copy = manifest_copy_generation(path.name) is not None
        unused = f"{DATA}/{path.name}" not in used and not copy
        if gen > store.generation or (gen == store.generation and unused):
            out.append(path.name)
    return out


def test_an_ingest_that_fills_the_disk_fails_cleanly_and_the_next_one_completes(
    small_fs, tmp_path, encoder
):
    first = make_folder(tmp_path / "first", 3, seed=1)
    second = make_folder(tmp_path / "second", 6, seed=2)
    home = small_fs / "home"
    ingest(find_files([first]), home / "idx", encoder, IngestOptions(workers=0))
    before = snapshot(home / "idx")
    manifest = (home / "idx" / MANIFEST).read_bytes()

    # Room for nothing, for part of a commit, for most of it: each fails somewhere else, and
    # each leaves generation 1 exactly as it was (the next attempt first removes what the
    # previous one left).
    tried = survived = 0
    stages = set()
    for room in (0, 12 << 10, 40 << 10, 72 << 10):
        fill(small_fs, room)
        tried += 1
        try:
            ingest(find_files([second]), home / "idx", encoder, IngestOptions(workers=0))
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        else:
            pytest.fail(f"{room} bytes free were enough for the commit: leave less")
        stages.add(tuple(sorted(leftovers(home / "idx"))))
        assert (home / "idx" / MANIFEST).read_bytes() == manifest
        assert snapshot(home / "idx") == before  # opens, passes check_invariants, unchanged
        survived += 1
    assert len(stages) >= 2, stages  # it ran out at different points of the commit
    print(f"leftovers of each failed commit: {sorted(stages)}")
    record("disk full", "ingest runs out of room mid-commit (in-process)", tried, survived)

    # The command line says so in one line, and exits non-zero.
    fill(small_fs, 24 << 10)
    env = {"XSEARCH_HOME": str(home)}
    args = ["--index", "idx", "-w", "random", "--config", "audioclip-tiny", "--workers", "0"]
    done = run_cli("ingest", str(second), *args, env=env)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in done.stderr and len(errors) == 1, done.stderr  # (and the banner)
    assert done.stderr.strip().endswith(errors[0])
    assert "disk full" in errors[0] and "No space left on device" in errors[0], errors
    assert "free some space and run it again" in errors[0]
    assert snapshot(home / "idx") == before
    assert leftovers(home / "idx")  # what the failed commit wrote is still there

    # With room again, the next ingest removes the leftovers and completes.
    (small_fs / "filler").unlink()
    report = ingest(find_files([second]), home / "idx", encoder, IngestOptions(workers=0))
    after = Store.open(home / "idx")
    assert report.generation == after.generation == before["generation"] + 1
    assert snapshot(home / "idx")["generation"] == after.generation  # check_invariants
    paths = set(after.assets.column("path").to_pylist())
    assert paths == {str(p) for p in find_files([first, second])}
    assert leftovers(home / "idx") == []
    record("disk full", "the command line: one line, then a run with room", 2, 2)


def test_a_full_index_can_still_be_searched(small_fs, tmp_path, encoder):
    """A query of a full index still works: reading needs no room."""
    import xsearch

    first = make_folder(tmp_path / "first", 2, seed=3)
    home = small_fs / "home"
    ingest(find_files([first]), home / "idx", encoder, IngestOptions(workers=0))
    fill(small_fs, 0)
    index = xsearch.open("idx", root=home, device="cpu")
    index.use_encoder(encoder)
    hits = index.search(text="sound", target="audio", k=5)
    assert [Path(h.path).name for h in hits] == ["a3-0.wav"]
    record("disk full", "search on a full disk", 1, 1)
