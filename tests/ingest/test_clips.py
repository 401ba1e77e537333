"""Video clips for a model of clips (MMV): where each clip lies, which frames it holds, and
how decoding, spilling and queries hand them on."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.media_factory import frame_index, write_video
from xsearch.ingest.decode import decode_file
from xsearch.media.frames import clip_window, stream_clips
from xsearch.media.query_files import QueryFiles
from xsearch.models.spec import ImageInput


def test_a_clip_is_centred_on_a_short_moment_and_kept_inside_the_video():
    assert clip_window(5.0, 5.0, 100.0, 3.2) == pytest.approx((3.4, 6.6))  # a point
    assert clip_window(4.0, 6.0, 100.0, 3.2) == pytest.approx((3.4, 6.6))  # shorter: centred
    assert clip_window(0.0, 10.0, 100.0, 3.2) == pytest.approx((0.0, 3.2))  # longer: its start
    assert clip_window(99.0, 99.0, 100.0, 3.2) == pytest.approx((96.8, 100.0))  # the end
    assert clip_window(0.5, 0.5, 100.0, 3.2) == pytest.approx((0.0, 3.2))  # the start
    assert clip_window(1.0, 1.0, 2.0, 3.2) == pytest.approx((0.0, 2.0))  # a shorter video
    assert clip_window(9.0, 9.0, None, 3.2) == pytest.approx((7.4, 10.6))  # length unknown


def test_each_sample_shows_the_latest_frame_and_each_frame_is_prepared_once():
    frames = [(i / 25, i) for i in range(100)]  # 4 s at 25 fps
    prepared = []

    def prepare(frame):
        prepared.append(frame)
        return np.array([frame])

    clips = list(stream_clips(iter(frames), [0.0, 0.1, 3.5], 4, 10.0, prepare))
    assert [c.ravel().tolist() for c in clips] == [[0, 2, 5, 7], [2, 5, 7, 10], [87, 90, 92, 95]]
    assert len(prepared) == len(set(prepared))  # shared frames prepared once
    # before the first frame: the first; past the last: the last
    late = [(1.0 + i / 10, i) for i in range(5)]
    [clip] = stream_clips(iter(late), [0.5], 12, 10.0, prepare)
    assert clip.ravel().tolist() == [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4]


def test_clips_stop_decoding_once_complete():
    pulled = []

    def frames():
        for i in range(1000):
            pulled.append(i)
            yield i / 10, i

    [clip] = stream_clips(frames(), [0.0], 4, 10.0, lambda f: np.array([f]))
    assert clip.ravel().tolist() == [0, 1, 2, 3] and len(pulled) < 10


@pytest.mark.parametrize("policy", ["central", "every:2", "mean:2"])
def test_a_video_decodes_to_clips_of_its_moments(tmp_path, policy):
    path = tmp_path / "v.mp4"
    write_video(path, 60, fps=10)  # 6 s; frame i has colour i
    decoded = decode_file(path, image_size=32, frames=policy, clip=(8, 4.0), image_norm=None)
    if policy == "central":
        [item] = decoded.frames
        assert (item.start, item.end) == pytest.approx((2.0, 4.0))  # 2 s around 3 s
        assert item.pixels.shape == (8, 32, 32, 3) and item.pixels.dtype == np.uint8
        assert [frame_index(p) for p in item.pixels] == [20, 22, 25, 27, 30, 32, 35, 37]
    elif policy == "every:2":
        spans = [x for f in decoded.frames for x in (f.start, f.end)]
        assert spans == pytest.approx([0, 2, 2, 4, 4, 6])
        assert [frame_index(f.pixels[0]) for f in decoded.frames] == [0, 20, 40]
    else:  # two clips spread over the video, one item
        [item] = decoded.frames
        assert item.pixels.shape == (2, 8, 32, 32, 3)
        assert [frame_index(c[0]) for c in item.pixels] == [0, 20]  # centred on 0 and 3 s


def test_clips_over_time_spill_to_a_file(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, 40, fps=10)
    spilled = decode_file(
        path, image_size=32, frames="every:1", clip=(4, 10.0), image_norm=None,
        spill_to=str(tmp_path / "s"),
    )  # fmt: skip
    held = decode_file(path, image_size=32, frames="every:1", clip=(4, 10.0), image_norm=None)
    assert type(spilled.frames).__name__ == "SpilledFrames"
    assert len(spilled.frames) == len(held.frames) == 4
    for a, b in zip(spilled.frames, held.frames):
        assert (a.start, a.end) == (b.start, b.end)
        np.testing.assert_array_equal(a.pixels, b.pixels)
    spilled.frames.discard()


def test_a_query_video_gives_the_clips_of_the_index_policy(tmp_path):
    path = tmp_path / "q.mp4"
    write_video(path, 50, fps=10)
    clips = QueryFiles().clips(path, "every:2", ImageInput(32, frames=4, fps=10.0))
    assert [c.shape for c in clips] == [(4, 32, 32, 3)] * 3
    assert [frame_index(c[0]) for c in clips] == [0, 20, 40]  # each moment's start


def test_every_places_its_clips_without_a_decoding_pass(tmp_path, monkeypatch):
    from xsearch.media import video
    from xsearch.media.frames import FramePolicy

    path = tmp_path / "v.mp4"
    write_video(path, 60, fps=10)
    decoded = []
    real = video.video_frames
    monkeypatch.setattr(video, "video_frames", lambda p: decoded.append(p) or real(p))
    windows = video.clip_moments(path, FramePolicy.parse("every:2"), 0.8)
    assert [w[0] for w in windows] == pytest.approx([0, 2, 4]) and decoded == []
    video.clip_moments(path, FramePolicy.parse("scenes"), 0.8)  # shots need the frames
    assert len(decoded) == 1
