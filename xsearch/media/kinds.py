"""Which kind of media a file holds, judged by its extension.

The extension is only a routing hint: the decoders read the content itself, so a mislabelled file
fails with a MediaError when decoded rather than being silently misread. The lists hold the
common extensions of what PyAV's FFmpeg (sound, video) and Pillow (pictures) decode; a file of
another extension is still tried when named explicitly (see `probe.probe_kind`).
"""

from __future__ import annotations

import os
from typing import Literal

MediaKind = Literal["audio", "image", "video", "text"]

AUDIO_EXTENSIONS = frozenset(
    {
        "wav", "wave", "w64", "flac", "mp3", "mp2", "mpa", "ogg", "oga", "opus", "spx", "m4a",
        "m4b", "aac", "wma", "aif", "aiff", "aifc", "au", "snd", "caf", "mka", "ape", "wv",
        "tta", "amr", "ac3", "voc", "weba",
    }
)  # fmt: skip
IMAGE_EXTENSIONS = frozenset(
    {
        "jpg", "jpeg", "jpe", "jfif", "png", "apng", "webp", "bmp", "dib", "gif", "tif", "tiff",
        "ico", "pbm", "pgm", "ppm", "pnm", "tga", "qoi", "avif", "jp2", "j2k", "pcx", "sgi",
    }
)  # fmt: skip
VIDEO_EXTENSIONS = frozenset(
    {
        "mp4", "m4v", "mov", "qt", "mkv", "webm", "avi", "mpg", "mpeg", "m2v", "3gp", "3g2",
        "ts", "mts", "m2ts", "vob", "wmv", "asf", "flv", "f4v", "ogv", "mxf", "dv",
    }
)  # fmt: skip
TEXT_EXTENSIONS = frozenset({"txt", "json"})

# Media that no decoder here reads, with what to do about it (no rasterizer is bundled).
UNSUPPORTED_HINTS = {
    "svg": "SVG (vector) pictures are not supported; convert them to PNG to index them",
    "svgz": "SVG (vector) pictures are not supported; convert them to PNG to index them",
}

_KIND_BY_EXTENSION: dict[str, MediaKind] = {
    **dict.fromkeys(AUDIO_EXTENSIONS, "audio"),
    **dict.fromkeys(IMAGE_EXTENSIONS, "image"),
    **dict.fromkeys(VIDEO_EXTENSIONS, "video"),
    **dict.fromkeys(TEXT_EXTENSIONS, "text"),
}


def extension(path: str | os.PathLike[str]) -> str:
    """The extension of `path`, lower case, without the dot ('' when it has none)."""
    return os.path.splitext(os.fspath(path))[1].lower().lstrip(".")


def kind_of(path: str | os.PathLike[str]) -> MediaKind | None:
    """Return the media kind of `path` from its extension (case-insensitive), or None if unknown."""
    return _KIND_BY_EXTENSION.get(extension(path))
