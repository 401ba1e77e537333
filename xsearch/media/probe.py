"""Cheap facts about a media file, read from its header without decoding its content."""

from __future__ import annotations

import os

import av
from PIL import Image

from xsearch.media.kinds import MediaKind

# FFmpeg marks an album's cover picture in a sound file as a video stream with this flag.
_ATTACHED_PIC = 1024


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether the file has an audio stream (False when it cannot be opened at all)."""
    try:
        with av.open(os.fspath(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def probe_kind(path: str | os.PathLike[str]) -> MediaKind | None:
    """What a file holds, judged by its content: 'image' when Pillow knows its format, else
    'video' or 'audio' by the streams FFmpeg finds (a cover picture is no video); None when
    neither can open it. For files whose extension says nothing (`kinds.kind_of` is None)."""
    name = os.fspath(path)
    try:
        with Image.open(name):
            return "image"
    except Exception:  # Pillow's plugins raise many kinds: it is not an image
        pass
    try:
        with av.open(name) as container:
            videos = [s for s in container.streams.video if not _is_cover(s)]
            if videos:
                return "video"
            if container.streams.audio:
                return "audio"
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        pass
    return None


def _is_cover(stream) -> bool:
    return bool(int(stream.disposition) & _ATTACHED_PIC)
