"""Media decoding: files in, the waveforms and RGB images a model's towers take out.

Everything here raises `xsearch.errors.MediaError` with a one-line message naming the file when
a file cannot be used, so a batch ingest can report it and go on.
"""

from __future__ import annotations

from xsearch.media.audio import load_audio
from xsearch.media.image import load_image
from xsearch.media.kinds import MediaKind, kind_of
from xsearch.media.probe import probe_kind
from xsearch.media.video import video_central_frame, video_frame

__all__ = [
    "MediaKind",
    "kind_of",
    "load_audio",
    "load_image",
    "probe_kind",
    "video_central_frame",
    "video_frame",
]
