"""The files a result shows: the asset's own file, and a small JPEG of the matched moment.

Every file opened here is an asset path from the index's table, never a path from a request.
"""

from __future__ import annotations

import io
import mimetypes
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from xsearch.errors import MediaError
from xsearch.media import load_image, video_frame
from xsearch.media.audio import media_error
from xsearch.server.catalog import Asset, Catalog, Item

THUMB_SIZE = (320, 240)
WAVE_SIZE = (320, 120)
DETAIL_WAVE_SIZE = (960, 160)  # the detail view's picture of a file's sound
# A waveform picture shows at most this much of a window (items are 10 s by default).
WAVE_MAX_SECONDS = 60.0
_WAVE_RATE = 8000
_WAVE_BACKGROUND = (30, 41, 59)
_WAVE_COLOUR = (56, 189, 248)

# What browsers need to play or show a file; anything else is served as bytes.
_MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
}


def media_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return _MEDIA_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


# A file whose modification time changed is still served when its bytes are those indexed;
# checked (and remembered) up to this size, refused past it.
HASH_AT_MOST = 64 << 20
# Where an open descriptor can be opened again as the very same file, whatever its path has
# become since (Linux; /dev/fd on BSDs and macOS); elsewhere files are read by path again.
_FD_FOLDERS = ("/proc/self/fd", "/dev/fd")


class IndexedFile:
    """An asset's file, opened once and checked to be the file that was indexed; `path` reads
    that same open file (its descriptor), so a file swapped in after the check is not what is
    read. Close it (or use it as a context manager) when done."""

    def __init__(self, fd: int, stat_result: os.stat_result, fallback: str) -> None:
        self.fd = fd
        self.stat = stat_result
        folder = next((f for f in _FD_FOLDERS if os.path.isdir(f)), None)
        self.path = f"{folder}/{fd}" if folder else fallback

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> IndexedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class IndexedFileResponse(FileResponse):
    """A checked file, read through its open descriptor, which is closed once the response is
    sent or abandoned. Ranges (206, for seeking in audio and video) are FileResponse's."""

    def __init__(self, opened: IndexedFile, media_type: str) -> None:
        super().__init__(opened.path, media_type=media_type, stat_result=opened.stat)
        self.opened = opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.opened.close()


def open_indexed(asset: Asset) -> IndexedFile | None:
    """The asset's file when it is still the regular file that was indexed: the recorded size,
    and the recorded modification time or (small files) content hash; None when it is gone or
    was replaced by something else, a symbolic link included (ingest records resolved paths,
    so the indexed file is never one: it is opened without following one)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(asset.path, flags)  # non-blocking: a FIFO put in its place cannot hang us
    except OSError:
        return None
    opened = IndexedFile(fd, os.fstat(fd), asset.path)
    if not _is_indexed(asset, opened):
        opened.close()
        return None
    return opened


def _is_indexed(asset: Asset, opened: IndexedFile) -> bool:
    st = opened.stat
    if not stat.S_ISREG(st.st_mode) or st.st_size != asset.bytes:
        return False
    if asset.mtime is None or asset.mtime < 0 or st.st_mtime == asset.mtime:
        return True
    if asset.content_hash is None or st.st_size > HASH_AT_MOST:
        return False
    key = (asset.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        from xsearch.ingest.identity import content_hash

        if len(_hashes) >= 1024:
            _hashes.clear()
        try:
            _hashes[key] = content_hash(Path(opened.path))
        except OSError:
            return False
    return _hashes[key] == asset.content_hash


# Content hashes of files touched since ingest, by what identifies that version of the file.
_hashes: dict[tuple, str] = {}


class ThumbnailCache:
    """Bounded LRU of rendered thumbnails (JPEG bytes by item id), shared by request threads;
    at most `parallel` thumbnails are rendered at once."""

    def __init__(self, catalog: Catalog, entries: int = 512, parallel: int = 4) -> None:
        self.catalog = catalog
        self.entries = entries
        self._cache: OrderedDict[object, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering = threading.BoundedSemaphore(parallel)

    def get(self, item: Item) -> bytes | None:
        """The item's thumbnail, or None when it has no picture (a text) or cannot be drawn."""
        asset = self.catalog.asset(item.asset_id)
        if asset is None or asset.kind == "text":
            return None
        return self._cached(
            item.item_id, asset, lambda path: _jpeg(self._picture(item, asset, path))
        )

    def wave(self, asset: Asset, start: float, end: float) -> bytes | None:
        """A wide picture of the asset's sound between `start` and `end` seconds (the caller
        bounds the span), as JPEG bytes; None when it has no sound or cannot be drawn."""
        if asset.kind not in ("audio", "video"):
            return None
        return self._cached(
            ("wave", asset.asset_id, start, end),
            asset,
            lambda path: _jpeg(waveform(path, start, end, DETAIL_WAVE_SIZE), DETAIL_WAVE_SIZE),
        )

    def _cached(self, key, asset: Asset, render: Callable[[str], bytes]) -> bytes | None:
        """`render(path)` of the asset's file, remembered by `key`. The file is checked first,
        so nothing of a file changed since is served, and rendered from the file checked."""
        opened = open_indexed(asset)
        if opened is None:
            return None
        with opened:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key] or None
            with self._rendering:
                try:
                    data = render(opened.path)
                except MediaError:
                    data = b""  # remembered: a file that fails is not decoded again and again
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        return data or None

    def _picture(self, item: Item, asset: Asset, path: str) -> Image.Image:
        if asset.kind == "image":
            return load_image(path)
        if asset.kind == "video":
            return video_frame(path, self._frame_time(item, asset))
        start = item.start or 0.0
        end = item.end if item.end is not None else (asset.duration or WAVE_MAX_SECONDS)
        return waveform(path, start, min(end, start + WAVE_MAX_SECONDS))

    def _frame_time(self, item: Item, asset: Asset) -> float | None:
        """The time of the moment the item is: a frame's own time; the middle of a sound
        window (the picture that played while it sounded); for an item without a time (a
        text), the asset's indexed frame (None: the central frame)."""
        if item.modality == "image":
            return item.start
        if item.start is not None and item.end is not None:
            return (item.start + item.end) / 2
        return self.catalog.frame_near(asset.asset_id, (asset.duration or 0.0) / 2)


def _jpeg(picture: Image.Image, size: tuple[int, int] = THUMB_SIZE) -> bytes:
    picture = picture.convert("RGB")
    picture.thumbnail(size)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=82)
    return buffer.getvalue()


def waveform(path: str, start: float, end: float, size: tuple[int, int] = WAVE_SIZE) -> Image.Image:
    """A picture of the sound between `start` and `end` seconds: its min/max envelope."""
    wave = _decode_span(path, start, end)
    width, height = size
    picture = Image.new("RGB", size, _WAVE_BACKGROUND)
    draw = ImageDraw.Draw(picture)
    middle = height / 2
    draw.line([(0, middle), (width, middle)], fill=(71, 85, 105))
    if len(wave) == 0:
        return picture
    columns = np.array_split(wave, min(width, len(wave)))
    low = np.array([c.min() for c in columns])
    high = np.array([c.max() for c in columns])
    peak = max(float(np.abs(wave).max()), 1e-3)  # silence stays a flat line
    scale = (middle - 4) / peak
    step = width / len(columns)
    for x, (lo, hi) in enumerate(zip(low, high)):
        left = x * step
        draw.rectangle(
            [left, middle - hi * scale, left + max(step - 1, 0), middle - lo * scale],
            fill=_WAVE_COLOUR,
        )
    return picture


def _decode_span(path: str, start: float, end: float) -> np.ndarray:
    """Mono float samples at a low rate between `start` and `end` seconds of the first audio
    track (a picture needs no more)."""
    chunks: list[np.ndarray] = []
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise media_error(path, "no audio track")
            stream = container.streams.audio[0]
            if start > 0 and stream.time_base:
                container.seek(int(start / stream.time_base), stream=stream)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=_WAVE_RATE)
            position = None
            for frame in container.decode(stream):
                if position is None or frame.time is not None:
                    position = frame.time if frame.time is not None else 0.0
                if position >= end:
                    break
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    skip = max(0, round((start - position) * _WAVE_RATE))
                    chunks.append(samples[skip:])
                    position += len(samples) / _WAVE_RATE
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise media_error(path, "cannot decode audio", exc) from exc
    if not chunks:
        return np.zeros(0, np.float32)
    wave = np.concatenate(chunks)
    return wave[: max(0, round((end - start) * _WAVE_RATE))]
