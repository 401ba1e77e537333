"""Cheap facts about a media file, read from its container without decoding."""

from __future__ import annotations

import os

import av


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether the file has an audio stream (False when it cannot be opened at all)."""
    try:
        with av.open(os.fspath(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False
