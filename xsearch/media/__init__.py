"""Media decoding: files in, the waveforms and RGB images a model's towers take out.

Everything here raises `xsearch.errors.MediaError` with a one-line message naming the file when
a file cannot be used, so a batch ingest can report it and go on.

The decoders load when first asked for: PyAV costs a tenth of a second, which a command that
only sorts files by kind (a re-ingest of unchanged files) need not pay.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from xsearch.media.kinds import MediaKind, kind_of

if TYPE_CHECKING:
    from xsearch.media.audio import load_audio
    from xsearch.media.image import load_image
    from xsearch.media.probe import probe_kind
    from xsearch.media.video import video_central_frame, video_frame

_LAZY = {
    "load_audio": "audio",
    "load_image": "image",
    "probe_kind": "probe",
    "video_central_frame": "video",
    "video_frame": "video",
}

__all__ = [
    "MediaKind",
    "kind_of",
    "load_audio",
    "load_image",
    "probe_kind",
    "video_central_frame",
    "video_frame",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"xsearch.media.{_LAZY[name]}"), name)
    raise AttributeError(name)
