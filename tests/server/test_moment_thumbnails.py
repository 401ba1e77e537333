"""A result's thumbnail is its moment: a sound window of a video shows the picture that
played while it sounded, a frame shows itself."""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image

from xsearch.server.catalog import Asset, Item
from xsearch.server.media import ThumbnailCache

RED, BLUE = (220, 30, 30), (30, 30, 220)


def two_scene_video(path, seconds: int = 12, fps: int = 5) -> None:
    """Red for the first half, blue for the second, with a quiet tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(seconds * fps):
            colour = RED if i < seconds * fps // 2 else BLUE
            rgb = np.empty((48, 64, 3), np.uint8)
            rgb[:] = colour
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode())


class Frames:
    """The catalog a thumbnail needs: the asset, and its indexed frame times."""

    def __init__(self, asset: Asset, frames: list[float]) -> None:
        self._asset, self._frames = asset, frames

    def asset(self, asset_id: int) -> Asset:
        return self._asset

    def frame_near(self, asset_id: int, seconds: float) -> float | None:
        return min(self._frames, key=lambda t: abs(t - seconds)) if self._frames else None


def colour(data: bytes) -> tuple[int, int, int]:
    return Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1)).getpixel((0, 0))


def test_a_sound_window_shows_the_frame_that_played_with_it(tmp_path):
    path = tmp_path / "two.mp4"
    two_scene_video(path)
    asset = Asset(1, str(path), "video", path.stat().st_size, 12.0)
    thumbs = ThumbnailCache(Frames(asset, frames=[6.0]))  # only the central frame indexed
    first = Item(10, 1, "audio", 0.0, 5.0, None)
    last = Item(11, 1, "audio", 10.0, 12.0, None)
    early_frame = Item(12, 1, "image", 1.0, 3.0, None)
    r, _, b = colour(thumbs.get(first))
    assert r > 150 > b  # red: 2.5 s, not the central frame
    r, _, b = colour(thumbs.get(last))
    assert b > 150 > r
    r, _, b = colour(thumbs.get(early_frame))
    assert r > 150 > b
