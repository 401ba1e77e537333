"""Query files decoded once, for every model that embeds them.

A search of several indexes embeds the same query files with each index's model. A picture
(or a video's frames, under one frame policy) decodes the same for all of them, since each
model resizes it its own way; a waveform depends on the model's audio input (sample rate,
resampler). So each file is decoded once per distinct input, however many indexes share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from xsearch.models.spec import AudioInput, ImageInput


class QueryFiles:
    """Decoded query files, kept for the searches that share this object. Decoded values are
    shared, not copied: encoders read their inputs and never change them."""

    def __init__(self) -> None:
        self._decoded: dict[Hashable, Any] = {}
        self.decodes = 0  # files actually decoded or probed (the rest came from here)

    def image(self, path: str | os.PathLike[str]) -> Image.Image:
        """The picture, or a video's central frame (`xsearch.media.load_image`)."""
        from xsearch.media import load_image

        return self._once(("image", os.fspath(path)), lambda: load_image(path))

    def frames(self, path: str | os.PathLike[str], policy: str) -> list[Image.Image]:
        """The pictures a query video stands for under a frame `policy` (see `query_frames`)."""
        from xsearch.media.frames import FramePolicy
        from xsearch.media.video import query_frames

        chosen = FramePolicy.parse(policy)
        return self._once(
            ("frames", os.fspath(path), str(chosen)), lambda: query_frames(path, chosen)
        )

    def clips(
        self, path: str | os.PathLike[str], policy: str, spec: ImageInput
    ) -> list[np.ndarray]:
        """The clips a query video stands for under a frame `policy`, for a model of video
        clips with input `spec` (see `clip_moments`; at most QUERY_FRAMES)."""
        from xsearch.media.frames import FramePolicy
        from xsearch.media.video import QUERY_FRAMES, clip_moments, video_clips

        chosen = FramePolicy.parse(policy)
        assert spec.clip_seconds is not None and spec.fps is not None

        def decode() -> list[np.ndarray]:
            windows = clip_moments(path, chosen, spec.clip_seconds, QUERY_FRAMES)
            return list(video_clips(path, windows, spec.size, spec.frames, spec.fps))

        return self._once(("clips", os.fspath(path), str(chosen), spec), decode)

    def audio(self, path: str | os.PathLike[str], spec: AudioInput) -> np.ndarray:
        """The waveform (of a video: its sound track) as a model with input `spec` takes it."""
        from xsearch.media import load_audio

        def decode() -> np.ndarray:
            return load_audio(
                path, spec.sample_rate, resampler=spec.resampler, channels=spec.channels
            )

        return self._once(("audio", os.fspath(path), spec), decode)

    def has_audio(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file (a video) has a sound track."""
        from xsearch.media.probe import has_audio

        return self._once(("has_audio", os.fspath(path)), lambda: has_audio(path))

    def _once(self, key: Hashable, decode: Callable[[], Any]) -> Any:
        if key not in self._decoded:
            self._decoded[key] = decode()
            self.decodes += 1
        return self._decoded[key]
