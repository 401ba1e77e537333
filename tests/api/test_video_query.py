"""A video given as a query stands for its frames under the index's frame policy, and its
sound: an index of frames over time is searched with several frames of the clip."""

from __future__ import annotations

import numpy as np

import xsearch
from tests.helpers.fakes import FAKE_SPECS, media_of
from xsearch.ingest.pipeline import IngestOptions
from xsearch.media.frames import FramePolicy
from xsearch.media.video import query_frames, video_frames
from xsearch.models.fake import FakeEncoder
from xsearch.samples import write_video
from xsearch.search.engine import fuse


def test_query_frames_follow_the_policy_and_stay_few(tmp_path):
    clip = tmp_path / "clip.mp4"
    write_video(clip, seconds=3.5, fps=10)
    times = [t for t, _ in video_frames(clip)]
    assert len(query_frames(clip, FramePolicy.parse("central"))) == 1
    every = query_frames(clip, FramePolicy.parse("every:1"))
    assert len(every) == 4  # 0, 1, 2 and 3 s
    widened = query_frames(clip, FramePolicy.parse("every:0.1"), most=5)
    assert 1 < len(widened) <= 5 < len(times)  # spread over the clip, not its first 0.5 s
    assert len(query_frames(clip, FramePolicy.parse("scenes:3"))) <= 3
    assert min(every[0].size) <= 448


def test_a_video_query_fuses_its_frames_and_its_sound(fake_media_index, monkeypatch):
    index = fake_media_index("audioclip-like")
    walk = media_of(index) / "dogs" / "walk.mp4"
    central = index.embed_queries(video=[walk])[0]
    monkeypatch.setattr(type(index), "_frame_policy", lambda self: "every:0.5")
    calls = dict(index.encoder.calls)
    several = index.embed_queries(video=[walk])[0]
    assert index.encoder.calls["image"] == calls.get("image", 0) + 1  # one batch of frames
    pictures = query_frames(walk, FramePolicy.parse("every:0.5"))
    assert len(pictures) == 4  # a 2 s clip
    frames = fuse(index.encoder.embed_images(pictures))
    sound = index.embed_queries(audio=[walk])[0]
    np.testing.assert_allclose(several, fuse(np.stack([frames, sound])), atol=1e-6)
    assert not np.allclose(several, central)


def test_an_index_of_frames_over_time_finds_the_clip_by_its_frames(tmp_path):
    spec = FAKE_SPECS["audioclip-like"]
    media = tmp_path / "media"
    media.mkdir()
    write_video(media / "sunset.mp4", seconds=4.0, fps=10)
    index = xsearch.open("frames", root=tmp_path / "home", create=True)
    index.use_encoder(FakeEncoder(spec, batch_size=4))
    index.ingest([media], IngestOptions(workers=0, frames="every:1"))
    assert index.status().recipe["frames"] == "every:1"
    hits = index.search(video=media / "sunset.mp4", target="image", k=4, per_file=4)
    assert [h.start for h in sorted(hits, key=lambda h: h.start)] == [0.0, 1.0, 2.0, 3.0]
    assert all(h.cosine > 0.2 for h in hits)  # each frame is one of the query's four
