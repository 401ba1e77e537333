"""DecodePool: every file comes back, bad ones with a reason, and nothing stops the pool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.media_factory import png_declaring, sine, write_video, write_wav
from xsearch.ingest.workers import DecodePool
from xsearch.samples import image_samples

RATE = 44100
TIMEOUT = 3.0


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    files = {name: folder / name for name in [
        "good.wav", "good.png", "good.mp4", "silent.mp4",
        "corrupt.wav", "truncated.mp4", "zero.png", "text.mp3", "bomb.png",
    ]}  # fmt: skip
    write_wav(files["good.wav"], sine(440, 3.0, RATE) * 32767, RATE)
    image_samples()["red_circle.png"].save(files["good.png"])
    write_video(files["good.mp4"], 20)
    write_video(files["silent.mp4"], 20, with_audio=False)
    rng = np.random.default_rng(0)
    files["corrupt.wav"].write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + rng.bytes(4000))
    whole = files["good.mp4"].read_bytes()
    files["truncated.mp4"].write_bytes(whole[: len(whole) // 2])
    files["zero.png"].write_bytes(b"")
    files["text.mp3"].write_text("this is not an mp3\n" * 50)
    png_declaring(files["bomb.png"], 100_000, 100_000)
    return files


GOOD = ["good.wav", "good.png", "good.mp4", "silent.mp4"]
BAD = ["corrupt.wav", "truncated.mp4", "zero.png", "text.mp3", "bomb.png"]


def run(pool: DecodePool, paths) -> dict[str, tuple]:
    results = {}  # in the order they came
    for path, decoded, reason in pool.imap(paths):
        assert (decoded is None) != (reason is None)
        assert Path(path).name not in results
        results[Path(path).name] = (decoded, reason)
    return results


def check_good(results, names=GOOD) -> None:
    for name in names:
        decoded, reason = results[name]
        assert reason is None, reason
        assert decoded.kind in ("audio", "image", "video")
    assert len(results["good.wav"][0].audio) == 1
    assert results["good.png"][0].image.shape == (224, 224, 3)
    assert results["good.mp4"][0].image is not None and results["good.mp4"][0].audio
    assert results["silent.mp4"][0].image is not None and not results["silent.mp4"][0].audio


def check_bad(results, media) -> None:
    for name in BAD:
        decoded, reason = results[name]
        assert decoded is None
        assert reason.startswith(str(media[name])), reason  # the MediaError message
        assert "\n" not in reason
    assert "too large" in results["bomb.png"][1]


def test_pool_reports_bad_files_and_keeps_going(media, tmp_path):
    hang = tmp_path / "hang.wav"
    os.mkfifo(hang)  # opening it for reading blocks until a writer comes: a real hang
    paths = [media[n] for n in BAD[:2]] + [hang] + [media[n] for n in BAD[2:] + GOOD]
    began = time.monotonic()
    with DecodePool(2, timeout=TIMEOUT) as pool:
        results = run(pool, paths)
        assert len(pool.worker_pids()) == 2  # the hung worker was replaced
    assert set(results) == {p.name for p in paths}
    check_good(results)
    check_bad(results, media)
    assert results["hang.wav"] == (None, f"timed out after {TIMEOUT:g} s")
    assert list(results)[-1] == "hang.wav"  # completion order: the rest went on meanwhile
    assert time.monotonic() - began < TIMEOUT + 10


def test_inline_mode(media):
    with DecodePool(0) as pool:
        results = run(pool, [media[n] for n in GOOD + BAD])
    check_good(results)
    check_bad(results, media)


def test_memory_limit(media, tmp_path):
    big = tmp_path / "big.png"
    Image.new("1", (9000, 9000), 1).save(big)  # 27 kB on disk, 324 MB as RGB
    with DecodePool(1, timeout=10, memory_mb=100) as pool:
        results = run(pool, [big, media["good.png"]])
    assert results["big.png"] == (None, "exceeded the memory limit (100 MB)")
    assert results["good.png"][1] is None


def test_crashed_worker(media, tmp_path):
    hang = tmp_path / "hang.wav"
    os.mkfifo(hang)
    with DecodePool(1, timeout=30) as pool:
        pool.wait_ready()
        (pid,) = pool.worker_pids()
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        results = run(pool, [hang, media["good.wav"]])
        killer.join()
    assert results["hang.wav"] == (None, f"worker crashed (signal {int(signal.SIGKILL)})")
    assert results["good.wav"][1] is None


def test_lazy_input_is_read_with_bounded_look_ahead(media):
    pulled = []

    def paths():
        for i in range(12):
            pulled.append(i)
            yield media["good.png"]

    with DecodePool(2, timeout=TIMEOUT, max_pending=3) as pool:
        results = pool.imap(paths())
        next(results)
        time.sleep(0.5)  # a slow consumer: the workers must not run far ahead
        assert len(pulled) <= 1 + 3
        assert sum(1 for _ in results) == 11


def test_stopping_early_then_reusing_the_pool(media, tmp_path):
    hang = tmp_path / "hang.wav"
    os.mkfifo(hang)
    with DecodePool(2, timeout=30) as pool:
        for path, _, _ in pool.imap([hang, media["good.png"]]):
            assert Path(path).name == "good.png"
            break  # abandons the hung file: its worker is killed, not waited for
        results = run(pool, [media["good.wav"], media["good.png"]])
    assert all(reason is None for _, reason in results.values())


def test_workers_do_not_import_torch():
    code = (
        "import sys, xsearch.ingest.workers, xsearch.ingest.decode; "
        "print(sorted(m for m in ('torch', 'torchvision', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_consumer_error_inside_with_leaves_no_workers(media, tmp_path):
    hang = tmp_path / "hang.wav"
    os.mkfifo(hang)
    with pytest.raises(RuntimeError, match="consumer failed"), DecodePool(2, timeout=30) as pool:
        pool.wait_ready()
        pids = pool.worker_pids()
        for _ in pool.imap([hang, media["good.png"]]):
            # The unfinished imap, and its hung file, must not outlive the pool.
            raise RuntimeError("consumer failed")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
