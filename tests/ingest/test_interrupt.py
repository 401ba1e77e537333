"""Progress that survives: a long ingest publishes every few seconds as well as every N files,
the first Ctrl-C (or SIGTERM) publishes what is embedded before the ingest returns, and a
second one stops it at once, leaving the last published generation as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.media_factory import sine, write_wav
from xsearch.ingest import pipeline
from xsearch.ingest.pipeline import IngestOptions, LocalBackend, ingest
from xsearch.ingest.scan import find_files
from xsearch.store.store import Store
from xsearch.store.verify import verify_index as verify


@pytest.fixture
def sounds(tmp_path) -> Path:
    root = tmp_path / "sounds"
    root.mkdir()
    for i in range(6):
        write_wav(root / f"s{i}.wav", sine(200.0 + 50 * i, 1.0, 16000) * 20000, 16000)
    return root


def indexed_names(index: Path) -> list[str]:
    return sorted(Path(p).name for p in Store.open(index).assets.column("path").to_pylist())


def interrupt_after(files: int, signals: tuple[int, ...]):
    """An on_file callback that sends `signals` to this process once `files` files are done."""
    done: list[Path] = []

    def on_file(path, status, items):
        done.append(path)
        if len(done) == files:
            for number in signals:
                os.kill(os.getpid(), number)

    return on_file, done


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_the_first_interrupt_publishes_what_is_embedded(tmp_path, sounds, tiny_audioclip, number):
    on_file, done = interrupt_after(2, (number,))
    handler = signal.getsignal(number)
    index = tmp_path / "index"
    options = IngestOptions(workers=1)
    report = ingest(find_files([sounds]), index, tiny_audioclip, options, on_file=on_file)
    assert report.interrupted and len(done) == 2 and report.added == 2
    assert indexed_names(index) == sorted(p.name for p in done)
    assert verify(index).healthy
    assert signal.getsignal(number) == handler  # given back: the next interrupt is as before
    again = ingest(find_files([sounds]), index, tiny_audioclip, options)
    assert not again.interrupted and again.added == 4 and again.unchanged == 2
    assert len(indexed_names(index)) == 6


def test_a_second_interrupt_stops_at_once_and_keeps_the_last_generation(
    tmp_path, sounds, tiny_audioclip
):
    index = tmp_path / "index"
    first = sorted(sounds.iterdir())[:2]
    ingest(first, index, tiny_audioclip, IngestOptions(workers=0))
    before = Store.open(index).generation
    on_file, _ = interrupt_after(2, (signal.SIGINT, signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        ingest(
            find_files([sounds]), index, tiny_audioclip, IngestOptions(workers=1), on_file=on_file
        )
    assert Store.open(index).generation == before and verify(index).healthy
    assert indexed_names(index) == sorted(p.name for p in first)
    report = ingest(find_files([sounds]), index, tiny_audioclip, IngestOptions(workers=0))
    assert report.added == 4  # the writer's lock was let go


class SlowThird(LocalBackend):
    """Decodes in this process; the third file takes a minute to come."""

    @contextmanager
    def decoding(self, paths, options, encoder):
        with super().decoding(paths, options, encoder) as results:

            def slow():
                for count, result in enumerate(results):
                    if count == 2:
                        time.sleep(60)
                    yield result

            yield slow()


def test_an_interrupt_while_waiting_for_a_file_stops_the_wait(tmp_path, sounds, tiny_audioclip):
    def on_file(path, status, items):
        if status == "ok" and on_file.count == 1:  # the second file: interrupt the wait after it
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        on_file.count += 1

    on_file.count = 0
    began = time.monotonic()
    options = IngestOptions(workers=0)
    index = tmp_path / "index"
    report = ingest(
        find_files([sounds]), index, tiny_audioclip, options, None, on_file, SlowThird()
    )
    assert time.monotonic() - began < 30  # not the minute of the third file
    assert report.interrupted and len(indexed_names(index)) == 2


def test_a_long_ingest_publishes_every_few_seconds(tmp_path, sounds, tiny_audioclip, monkeypatch):
    monkeypatch.setattr(pipeline, "MOST_TIME_IN_COMMITS", 1.0)  # however long a commit takes
    generations: list[int] = []
    index = tmp_path / "index"

    def on_file(path, status, items):
        generations.append(
            Store.open(index).generation if (index / "manifest.json").exists() else 0
        )

    options = IngestOptions(workers=0, commit_seconds=0.0)  # every file is "a few seconds" late
    report = ingest(find_files([sounds]), index, tiny_audioclip, options, on_file=on_file)
    assert report.generation == 6 and generations == [0, 1, 2, 3, 4, 5]
    options = IngestOptions(workers=0)  # the defaults: one commit for six quick files
    report = ingest(find_files([sounds]), tmp_path / "other", tiny_audioclip, options)
    assert report.generation == 1


def test_ctrl_c_on_the_command_line_publishes_and_exits_130(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(40):
        write_wav(root / f"s{i:02d}.wav", sine(100.0 + 10 * i, 2.0, 16000) * 20000, 16000)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "XSEARCH_HOME": str(tmp_path / "home"), "TMPDIR": str(temp)}
    exe = str(Path(sys.executable).with_name("xsearch"))
    cmd = [exe, "ingest", str(root), "--index", "i", "-w", "random", "--config",
           "audioclip-tiny", "--device", "cpu", "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(temp.glob("xsearch-spill-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the spill folder: the ingest is decoding and embedding
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    text = stderr.decode()
    assert process.returncode == 130, text
    assert "interrupted: what was embedded is published" in text
    index = tmp_path / "home" / "i"
    published = len(indexed_names(index)) if (index / "manifest.json").exists() else 0
    assert published < 40 and (published == 0 or verify(index).healthy)
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(indexed_names(index)) == 40


def test_commits_that_cost_much_come_less_often(tmp_path, sounds, tiny_audioclip, monkeypatch):
    """A commit that rewrites a large store takes long: the periodic ones then wait until the
    work since the last one is nine times the commit's cost (a tenth of the time in commits)."""
    real_commit = pipeline.Writer.commit
    clock = [0.0]

    def slow_commit(writer, changes):
        clock[0] += 10.0  # as if it took 10 s
        return real_commit(writer, changes)

    def on_file(path, status, items):
        clock[0] += 30.0  # as if each file took 30 s of work

    monkeypatch.setattr(pipeline.Writer, "commit", slow_commit)
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock[0])
    options = IngestOptions(workers=0, commit_seconds=0.0)
    report = ingest(find_files([sounds]), tmp_path / "i", tiny_audioclip, options, on_file=on_file)
    # a commit after file 1; then one after 90 s of work (files 4), then the final one
    assert report.generation == 3
