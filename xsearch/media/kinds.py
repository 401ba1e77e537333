"""Which kind of media a file holds, judged by its extension.

The extension is only a routing hint: the decoders read the content itself, so a mislabelled file
fails with a MediaError when decoded rather than being silently misread.
"""

from __future__ import annotations

import os
from typing import Literal

MediaKind = Literal["audio", "image", "video", "text"]

AUDIO_EXTENSIONS = frozenset(
    {"wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "wma", "aiff", "aif"}
)
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"})
VIDEO_EXTENSIONS = frozenset({"mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg"})
TEXT_EXTENSIONS = frozenset({"txt", "json"})

_KIND_BY_EXTENSION: dict[str, MediaKind] = {
    **dict.fromkeys(AUDIO_EXTENSIONS, "audio"),
    **dict.fromkeys(IMAGE_EXTENSIONS, "image"),
    **dict.fromkeys(VIDEO_EXTENSIONS, "video"),
    **dict.fromkeys(TEXT_EXTENSIONS, "text"),
}


def kind_of(path: str | os.PathLike[str]) -> MediaKind | None:
    """Return the media kind of `path` from its extension (case-insensitive), or None if unknown."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return _KIND_BY_EXTENSION.get(ext)
