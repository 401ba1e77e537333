"""Frames over time go to a file as they are picked and come back one at a time as they are
embedded: memory does not grow with a video's length, the index is the one frames held in
memory give, and no spill file outlives its video or its ingest, whatever fails."""

from __future__ import annotations

import pickle
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers.media_factory import frame_index, sine, write_audio, write_video
from tests.helpers.peak_memory import run_for_peak
from xsearch.errors import MediaError
from xsearch.ingest import decode, pipeline, workers
from xsearch.ingest.decode import decode_file
from xsearch.ingest.pipeline import IngestOptions, LocalBackend, ingest
from xsearch.ingest.scan import find_files
from xsearch.ingest.spill import SpilledFrames
from xsearch.ingest.workers import DecodePool
from xsearch.store.store import Store


def write_long_video(path: Path, seconds: float, fps: int = 10, size=(320, 240)) -> None:
    """A video without sound of `seconds`: grey levels that change every frame, and a square
    that moves (MPEG-4 Part 2: quick to write)."""
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 1_000_000
        rgb = np.zeros((height, width, 3), np.uint8)
        for i in range(round(seconds * fps)):
            rgb[:] = (7 * i) % 256
            x = (5 * i) % (width - 32)
            rgb[100:132, x : x + 32] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))


def spill_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".frames", ".sound"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "long.mp4", 45, fps=10)  # 4.5 s
    write_video(root / "short.mp4", 12, fps=10, with_audio=False)  # 1.2 s
    return root


# --- decoding to a file ----------------------------------------------------------------------


def test_spilled_frames_are_the_frames_held_in_memory(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 35, fps=10)
    held = decode_file(path, frames="every:0.5", image_norm=None)
    spill = tmp_path / "clip"
    spilled = decode_file(path, frames="every:0.5", image_norm=None, spill_to=str(spill))
    frames_file = tmp_path / "clip.frames"
    assert isinstance(spilled.frames, SpilledFrames)
    assert frames_file.stat().st_size == 7 * 224 * 224 * 3
    assert [frame_index(f.pixels) for f in spilled.frames] == [0, 5, 10, 15, 20, 25, 30]
    assert [(f.start, f.end) for f in spilled.frames] == [(f.start, f.end) for f in held.frames]
    for ours, theirs in zip(spilled.frames, held.frames, strict=True):
        assert np.array_equal(ours.pixels, theirs.pixels)
    assert np.array_equal(spilled.frames[-1].pixels, held.frames[-1].pixels)
    assert frame_index(spilled.image) == 0 and spilled.frame_time == 0.0
    assert len(pickle.dumps(spilled.frames)) < 2000  # what crosses a worker's pipe: no pixels


def test_the_central_frame_and_images_stay_in_memory(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 20, fps=10)
    spill = tmp_path / "clip"
    central = decode_file(path, spill_to=str(spill))
    assert isinstance(central.frames, list) and len(central.frames) == 1
    assert not (tmp_path / "clip.frames").exists()


def test_a_decode_that_fails_half_way_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    write_video(path, 30, fps=10)
    real = decode.video_frames

    def three_then_broken(name):
        for count, frame in enumerate(real(name)):
            if count == 3:
                raise MediaError(f"{name}: cannot decode video: broken")
            yield frame

    monkeypatch.setattr(decode, "video_frames", three_then_broken)
    spill = tmp_path / "clip"
    written: list[int] = []
    monkeypatch.setattr(decode.FrameWriter, "append", counting(decode.FrameWriter.append, written))
    with pytest.raises(MediaError):
        decode_file(path, frames="every:0.1", spill_to=str(spill))
    assert len(written) == 3 and spill_files(tmp_path) == []  # nor its sound, spilled first


def counting(method, calls: list):
    def wrapped(self, *args):
        calls.append(1)
        return method(self, *args)

    return wrapped


PEAK_SCRIPT = """
import json, sys
from xsearch.ingest.decode import decode_file
path, spill = sys.argv[1], sys.argv[2] or None
RESULT = len(decode_file(path, frames="every:0.1", sample_rate=None, spill_to=spill).frames)
"""


def decode_peak_mb(video: Path, spill: Path | None) -> tuple[int, float]:
    """(frames, peak resident MB) of a fresh process decoding `video` at every frame."""
    frames, peak = run_for_peak(PEAK_SCRIPT, str(video), str(spill or ""))
    return int(frames), peak  # type: ignore[call-overload]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_peak_memory_of_decoding_does_not_grow_with_the_video(tmp_path):
    """30 s and 120 s at every frame (300 and 1,200 frames of 150 KB): spilled, the peak is
    the same; held in memory, it grows by the 900 frames (135 MB)."""
    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    write_long_video(short, 30)
    write_long_video(long, 120)
    frames, spilled_short = decode_peak_mb(short, tmp_path / "short")
    assert frames == 300
    frames, spilled_long = decode_peak_mb(long, tmp_path / "long")
    assert frames == 1200
    _, held_short = decode_peak_mb(short, None)
    _, held_long = decode_peak_mb(long, None)
    assert spilled_long - spilled_short < 20, (spilled_short, spilled_long)
    assert held_long - held_short > 100, (held_short, held_long)  # what the test can see


# --- the decode pool -------------------------------------------------------------------------


def test_a_worker_killed_mid_video_leaves_no_spill_file(tmp_path, monkeypatch):
    """The time limit kills the worker while it writes the frames: the partial file goes."""
    video = tmp_path / "long.mp4"
    write_long_video(video, 120)
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setattr(workers, "SECONDS_PER_VIDEO_SECOND", 0.0)
    seen = watch_files(folder)
    with DecodePool(1, timeout=0.5, frames="every:0.1", spill_dir=str(folder)) as pool:
        pool.wait_ready()
        [(_, decoded, reason)] = list(pool.imap([str(video)]))
    seen.stop()
    assert decoded is None and reason == "timed out after 0.5 s"
    assert seen.most > 0  # it was writing one when it was killed
    assert spill_files(folder) == []


def test_a_file_that_fails_in_a_worker_leaves_no_spill_file(tmp_path):
    """An .mp4 of sound alone opens, then has no frames to write: a MediaError in the worker."""
    broken = tmp_path / "broken.mp4"
    write_audio(broken, sine(440.0, 1.0, 44100), 44100, "aac")
    folder = tmp_path / "spill"
    folder.mkdir()
    with DecodePool(1, frames="every:1", spill_dir=str(folder)) as pool:
        [(_, decoded, reason)] = list(pool.imap([str(broken)]))
    assert decoded is None and reason.endswith("no video track")
    assert spill_files(folder) == []


class watch_files:
    """Counts the spill files in a folder every few milliseconds, in a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.most = folder, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.005):
            self.most = max(self.most, len(spill_files(self.folder)))

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


# --- ingest ----------------------------------------------------------------------------------


def index_contents(index: Path) -> tuple[list[tuple], np.ndarray]:
    """The items (file, modality, start, end) in id order, and their vectors."""
    store = Store.open(index)
    names = {a["asset_id"]: Path(a["path"]).name for a in store.assets.to_pylist()}
    items = sorted(store.items.to_pylist(), key=lambda item: item["item_id"])
    rows = [(names[i["asset_id"]], i["modality"], i["start"], i["end"]) for i in items]
    return rows, store.vectors([i["item_id"] for i in items])


def test_an_ingest_of_spilled_frames_is_the_ingest_of_frames_in_memory(
    tmp_path, videos, tiny_audioclip
):
    options = IngestOptions(workers=1, frames="every:0.5")  # through a worker's pipe
    spilled, held = tmp_path / "spilled", tmp_path / "held"
    ingest(find_files([videos]), spilled, tiny_audioclip, options, backend=LocalBackend())
    backend = LocalBackend(spill_frames=False)
    ingest(find_files([videos]), held, tiny_audioclip, options, backend=backend)
    items, vectors = index_contents(spilled)
    held_items, held_vectors = index_contents(held)
    assert sum(1 for item in items if item[1] == "image") == 9 + 3
    assert items == held_items and np.array_equal(vectors, held_vectors)


def test_the_ingest_reads_frames_no_faster_than_it_embeds_them(
    tmp_path, videos, tiny_audioclip, monkeypatch
):
    """A long video's frames are read from its file as the batcher takes them: never more
    than a batch ahead of the model."""
    read: list[int] = []
    embedded: list[int] = []
    ahead: list[int] = []
    real_frame, real_embed = SpilledFrames._frame, pipeline.embed_batch

    def read_one(self, index, file):
        read.append(1)
        ahead.append(len(read) - len(embedded))
        return real_frame(self, index, file)

    def embed(encoder, modality, payloads):
        if modality == "image":
            embedded.extend(1 for _ in payloads)
        return real_embed(encoder, modality, payloads)

    monkeypatch.setattr(SpilledFrames, "_frame", read_one)
    monkeypatch.setattr(pipeline, "embed_batch", embed)
    options = IngestOptions(workers=1, frames="every:0.1")
    report = ingest(find_files([videos]), tmp_path / "idx", tiny_audioclip, options)
    assert report.failed == [] and report.items["image"] == 45 + 12 == len(read)
    assert max(ahead) <= tiny_audioclip.batch_size


def test_spill_files_go_with_each_video_and_the_folder_with_the_ingest(
    tmp_path, videos, tiny_audioclip, monkeypatch
):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    during: list[tuple[int, int]] = []  # (spill folders, spill files) as each file is done

    def on_file(path, status, items):
        during.append((len(list(temp.iterdir())), len(spill_files(temp))))

    options = IngestOptions(workers=0, frames="every:1")  # decoded when the ingest asks
    report = ingest(find_files([videos]), tmp_path / "idx", tiny_audioclip, options, None, on_file)
    assert report.failed == [] and during == [(1, 0), (1, 0)]
    assert list(temp.iterdir()) == []


def test_an_ingest_that_raises_leaves_no_spill_folder(
    tmp_path, videos, tiny_audioclip, monkeypatch
):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    seen: list[int] = []

    def on_file(path, status, items):
        seen.append(len(list(temp.iterdir())))
        raise KeyboardInterrupt

    options = IngestOptions(workers=2, frames="every:1")
    with pytest.raises(KeyboardInterrupt):
        ingest(find_files([videos]), tmp_path / "idx", tiny_audioclip, options, None, on_file)
    assert seen == [1] and list(temp.iterdir()) == []
