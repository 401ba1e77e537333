"""A file's sound goes to a file as it is decoded and comes back one window at a time, and a
video's sound comes ahead of its frames over time: the model embeds it while the frames
decode, and a video that fails after its sound leaves nothing of itself in the index."""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.media_factory import sine, write_audio, write_video, write_wav
from tests.helpers.peak_memory import run_for_peak
from xsearch.ingest import pipeline
from xsearch.ingest.decode import Decoded, decode_file
from xsearch.ingest.pipeline import IngestOptions, LocalBackend, ingest
from xsearch.ingest.scan import find_files
from xsearch.ingest.spill import SpilledSound
from xsearch.ingest.workers import DecodePool
from xsearch.store.store import Changes, Store


def windows(decoded: Decoded) -> list[tuple[float, float, np.ndarray]]:
    return [(w.start, w.end, np.asarray(w.wave)) for w in decoded.audio]


def assert_same_windows(ours: Decoded, theirs: Decoded) -> None:
    assert len(ours.audio) == len(theirs.audio) > 0
    for (a, b, wave), (c, d, other) in zip(windows(ours), windows(theirs), strict=True):
        assert (a, b) == (c, d)
        np.testing.assert_array_equal(wave, other)
    assert ours.duration == theirs.duration


# --- decoding to a file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_rate", "model_rate", "resampler"),
    [(44100, 44100, "swr"), (22050, 44100, "swr"), (44100, 48000, "soxr_hq")],
)
def test_spilled_sound_is_the_sound_held_in_memory(tmp_path, file_rate, model_rate, resampler):
    """Streamed through (swr), or resampled whole (soxr, as LAION-CLAP's loader): the same
    windows, to the sample, and the tail merged as in memory."""
    path = tmp_path / "tone.flac"
    write_audio(path, sine(330.0, 20.6, file_rate), file_rate, "flac")
    options = {"window_seconds": 5.0, "sample_rate": model_rate, "resampler": resampler}
    held = decode_file(path, **options)
    spilled = decode_file(path, **options, spill_to=str(tmp_path / "tone"))
    assert isinstance(spilled.audio, SpilledSound)
    assert [round(w.end - w.start, 3) for w in held.audio] == [5.0, 5.0, 5.0, 5.6]
    assert_same_windows(spilled, held)
    assert (tmp_path / "tone.sound").stat().st_size == 4 * sum(len(w.wave) for w in held.audio)
    assert len(pickle.dumps(spilled.audio)) < 1000  # what crosses a worker's pipe: no samples


def test_a_video_spills_its_sound_and_a_silent_one_nothing(tmp_path):
    sounded, silent = tmp_path / "sounded.mp4", tmp_path / "silent.mp4"
    write_video(sounded, 30, fps=10)
    write_video(silent, 30, fps=10, with_audio=False)
    held = decode_file(sounded, frames="every:1")
    spilled = decode_file(sounded, frames="every:1", spill_to=str(tmp_path / "a"))
    assert_same_windows(spilled, held)
    quiet = decode_file(silent, frames="every:1", spill_to=str(tmp_path / "b"))
    assert quiet.audio == [] and not (tmp_path / "b.sound").exists()


def test_a_damaged_sound_leaves_no_file(tmp_path):
    path = tmp_path / "cut.wav"
    write_wav(path, (sine(440.0, 2.0, 8000) * 20000), 8000)
    path.write_bytes(path.read_bytes()[:44])  # the header alone: no samples
    with pytest.raises(Exception, match=r"audio track is empty|cannot"):
        decode_file(path, spill_to=str(tmp_path / "cut"))
    assert not (tmp_path / "cut.sound").exists()


PEAK_SCRIPT = """
import json, sys
from xsearch.ingest.decode import decode_file
path, spill = sys.argv[1], sys.argv[2] or None
RESULT = len(decode_file(path, spill_to=spill).audio)
"""


def decode_peak_mb(path: Path, spill: Path | None) -> tuple[int, float]:
    """(windows, peak resident MB) of a fresh process decoding the sound of `path`."""
    count, peak = run_for_peak(PEAK_SCRIPT, str(path), str(spill or ""))
    return int(count), peak  # type: ignore[call-overload]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_peak_memory_of_decoding_sound_does_not_grow_with_its_length(tmp_path):
    """1 and 10 minutes at 44.1 kHz: spilled, the peak is the same; held, it grows by the
    9 minutes (95 MB of float32, twice while the pieces are joined)."""
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    write_wav(short, sine(440.0, 60.0, 44100) * 20000, 44100)
    write_wav(long, sine(440.0, 600.0, 44100) * 20000, 44100)
    assert decode_peak_mb(short, tmp_path / "s")[0] == 6
    count, spilled_long = decode_peak_mb(long, tmp_path / "l")
    spilled_short = decode_peak_mb(short, tmp_path / "s2")[1]
    assert count == 60
    held_short, held_long = decode_peak_mb(short, None)[1], decode_peak_mb(long, None)[1]
    assert spilled_long - spilled_short < 20, (spilled_short, spilled_long)
    assert held_long - held_short > 150, (held_short, held_long)  # what the test can see


# --- the decode pool: sound first ------------------------------------------------------------


def test_a_video_with_frames_over_time_gives_its_sound_first(tmp_path):
    video, central = tmp_path / "v.mp4", tmp_path / "c.mp4"
    write_video(video, 60, fps=10)
    write_video(central, 60, fps=10)
    folder = tmp_path / "spill"
    folder.mkdir()
    options = {"frames": "every:1", "spill_dir": str(folder), "early_sound": True}
    with DecodePool(1, **options) as pool:
        results = list(pool.imap([str(video)]))
    (_, first, none), (_, whole, _) = results
    assert none is None and first.partial and not whole.partial
    assert first.frames == [] and len(whole.frames) == 6
    held = decode_file(video, frames="every:1")
    assert_same_windows(first, held)
    assert_same_windows(whole, held)
    folder = tmp_path / "spill2"
    folder.mkdir()
    central_options = options | {"frames": "central", "spill_dir": str(folder)}
    with DecodePool(1, **central_options) as pool:
        assert [d.partial for _, d, _ in pool.imap([str(central)])] == [False]


def test_early_sound_needs_files_to_spill_to():
    with pytest.raises(ValueError, match="spill_dir"):
        DecodePool(1, early_sound=True)


# --- ingest ----------------------------------------------------------------------------------


class Scripted(LocalBackend):
    """Decodes in this process, then hands the results on as `script` says: each video's
    sound ahead of it (`early`), results moved after others, a video failing after its
    sound."""

    def __init__(self, script) -> None:
        super().__init__()
        self.script = script

    @contextmanager
    def decoding(self, paths, options, encoder):
        with super().decoding(paths, options, encoder) as decoded:
            yield iter(self.script(list(decoded)))


def early(result):
    name, decoded, _ = result
    return name, Decoded(name, "video", decoded.duration, audio=decoded.audio, partial=True), None


def index_contents(index: Path) -> dict[tuple, np.ndarray]:
    """(file, modality, start, end) -> vector, for every item."""
    store = Store.open(index)
    names = {a["asset_id"]: Path(a["path"]).name for a in store.assets.to_pylist()}
    items = store.items.to_pylist()
    vectors = store.vectors([i["item_id"] for i in items])
    keys = [(names[i["asset_id"]], i["modality"], i["start"], i["end"]) for i in items]
    return dict(zip(keys, vectors, strict=True))


@pytest.fixture
def media(tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    write_video(root / "a.mp4", 35, fps=10)
    write_audio(root / "b.flac", sine(220.0, 3.0, 44100), 44100, "flac")
    return root


def test_sound_ahead_of_frames_gives_the_index_of_whole_files(
    tmp_path, media, tiny_audioclip, monkeypatch
):
    """a.mp4's sound, then b.flac whole (and a commit after it), then a.mp4 whole: the index
    of one result per file, and no commit holds a.mp4's items without a.mp4."""
    options = IngestOptions(workers=0, frames="every:1", commit_every=1)
    plain = tmp_path / "plain"
    ingest(find_files([media]), plain, tiny_audioclip, options)

    def sound_first(results):
        [video] = [r for r in results if r[0].endswith(".mp4")]
        [sound] = [r for r in results if r[0].endswith(".flac")]
        return [early(video), sound, video]

    committed: list[Changes] = []
    real_commit = pipeline.Writer.commit

    def commit(writer, changes):
        known = {a["asset_id"] for a in writer.store.assets.to_pylist()}
        known |= {a["asset_id"] for a in changes.new_assets}
        committed.append(changes)
        assert all(item["asset_id"] in known for item in changes.new_items)
        return real_commit(writer, changes)

    monkeypatch.setattr(pipeline.Writer, "commit", commit)
    scripted = tmp_path / "scripted"
    report = ingest(
        find_files([media]), scripted, tiny_audioclip, options, backend=Scripted(sound_first)
    )
    assert report.failed == [] and len(committed) == 1  # b.flac's commit waited for a.mp4
    ours, theirs = index_contents(scripted), index_contents(plain)
    assert sorted(ours) == sorted(theirs)
    for key, vector in ours.items():
        np.testing.assert_allclose(vector, theirs[key], rtol=1e-5, atol=1e-6)


def test_a_video_that_fails_after_its_sound_leaves_nothing(tmp_path, media, tiny_audioclip):
    def fails_after_sound(results):
        [video] = [r for r in results if r[0].endswith(".mp4")]
        [sound] = [r for r in results if r[0].endswith(".flac")]
        return [early(video), sound, (video[0], None, f"{video[0]}: cannot decode video: broken")]

    options = IngestOptions(workers=0, frames="every:1")
    index = tmp_path / "index"
    report = ingest(
        find_files([media]), index, tiny_audioclip, options, backend=Scripted(fails_after_sound)
    )
    assert [Path(p).name for p, _ in report.failed] == ["a.mp4"]
    assert report.items == {"audio": 1}  # b.flac's window: a.mp4's is taken back
    contents = index_contents(index)
    assert {key[0] for key in contents} == {"b.flac"} and len(contents) == 1
    store = Store.open(index)
    assert [Path(f["path"]).name for f in store.failures.to_pylist()] == ["a.mp4"]


def test_vectors_of_items_taken_back_are_dropped_whenever_they_come():
    changes = Changes()
    changes.new_items = [{"item_id": i, "asset_id": i // 2} for i in range(4)]
    changes.add_vectors("audio", np.array([0, 1]), np.eye(2, 4, dtype=np.float32))
    changes.discard_items([1, 2])
    changes.add_vectors("audio", np.array([2, 3]), np.ones((2, 4), np.float32))  # embedded late
    assert [item["item_id"] for item in changes.new_items] == [0, 3]
    assert [ids.tolist() for ids, _ in changes.new_vectors["audio"]] == [[0], [3]]
    changes.discard_items([0])
    assert [ids.tolist() for ids, _ in changes.new_vectors["audio"]] == [[3]]


# --- sharing the CPUs with the decoders ------------------------------------------------------


def test_the_model_leaves_decoding_workers_their_cores(tiny_audioclip, monkeypatch):
    """While workers decode, the model runs on the cores they leave (at least one); with none
    decoding, on all of its threads; afterwards, as before."""
    import torch

    seen: list[int] = []
    real = pipeline.embed_batch

    def embed(encoder, modality, payloads):
        seen.append(torch.get_num_threads())
        return real(encoder, modality, payloads)

    monkeypatch.setattr(pipeline, "embed_batch", embed)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        busy = iter([0, 1, 2, 5])
        embedder = pipeline._InProcessEmbedder(tiny_audioclip, lambda: next(busy))
        wave = [np.zeros(16000, np.float32)]
        for _ in range(4):
            embedder.submit("audio", wave, lambda vectors: None)
        assert seen == [3, 2, 1, 1] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
