"""Query files sent as a request's raw body: size-limited, stored under a name the server picks,
and decoded once in a sandboxed worker before the model sees them."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import tempfile
import threading
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from xsearch.errors import MediaError
from xsearch.ingest.workers import DecodePool
from xsearch.media.kinds import kind_of

UPLOAD_KINDS = ("audio", "image", "video")
# The suffix a stored upload gets when its Content-Type does not name one of the right kind:
# the decoders route by extension (a video's frame vs. a picture), and probe the content.
_DEFAULT_SUFFIX = {"audio": ".wav", "image": ".png", "video": ".mp4"}


def upload_kind(declared: str | None, content_type: str | None) -> str:
    """What the query file is: `as=` when given, else the Content-Type's major type."""
    if declared:
        if declared not in UPLOAD_KINDS:
            raise HTTPException(
                400, f"unknown as={declared!r}; use one of {', '.join(UPLOAD_KINDS)}"
            )
        return declared
    major = (content_type or "").split("/", 1)[0].strip().lower()
    if major in UPLOAD_KINDS:
        return major
    raise HTTPException(
        400,
        "say what the query file is: as=audio|image|video, or a Content-Type audio/*, image/* "
        "or video/*",
    )


def suffix_for(kind: str, content_type: str | None) -> str:
    """An extension of `kind` for the stored file, from the Content-Type when it names one."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    guessed = mimetypes.guess_extension(mime) if mime else None
    if guessed and kind_of("upload" + guessed) == kind:
        return guessed
    return _DEFAULT_SUFFIX[kind]


async def receive(
    request: Request, limit: int, directory: str | None, suffix: str, idle: float = 10.0
) -> Path:
    """Write the request body to a new temporary file and return its path (the caller deletes
    it). Refuses with 413 before reading anything when Content-Length says the body is larger
    than `limit` bytes, and stops reading when a body without one grows past it; with 408
    when the body stalls for `idle` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HTTPException(400, "bad Content-Length header")
        if int(declared) > limit:
            raise HTTPException(413, too_large(limit))
    fd, name = tempfile.mkstemp(prefix="xsearch-upload-", suffix=suffix, dir=directory)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            chunks = request.stream().__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), idle)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise HTTPException(408, f"the query file stalled for {idle:g} s") from None
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, too_large(limit))
                f.write(chunk)
    except ClientDisconnect:
        path.unlink(missing_ok=True)
        raise HTTPException(400, "the upload was interrupted") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise HTTPException(400, "the query file is empty: send it as the request body")
    return path


def too_large(limit: int) -> str:
    return f"the query file is larger than the {limit / 1e6:g} MB limit"


class QueryDecoders:
    """Decode query files in worker processes with a time and memory limit, so that a hostile
    file (a decompression bomb, hours of audio, a hanging decoder) fails there and not in the
    server. Workers are started once and reused: a fresh one spends 0.4-0.6 s importing its
    libraries, more than a small file takes to decode. At most `parallel` files are decoded
    at once; a worker that times out, runs out of memory or crashes is replaced by its pool."""

    def __init__(self, timeout: float, memory_mb: int, parallel: int = 4) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._slots = threading.BoundedSemaphore(parallel)
        self._idle: list[DecodePool] = []
        self._lock = threading.Lock()
        self._closed = False

    def warm(self) -> None:
        """Start a worker now (in the background), so that the first query file waits less."""
        with self._lock:
            if not self._idle and not self._closed:
                self._idle.append(self._new_pool())

    def check(self, path: Path) -> None:
        """Decode `path` once; MediaError with a one-line reason when it cannot be."""
        with self._slots:
            with self._lock:
                if self._closed:
                    raise MediaError("the server is stopping")
                pool = self._idle.pop() if self._idle else self._new_pool()
            try:
                for _, _, reason in pool.imap([path]):
                    if reason is not None:
                        raise MediaError(reason)
            finally:
                with self._lock:
                    keep = not self._closed
                    if keep:
                        self._idle.append(pool)
                if not keep:
                    pool.close()

    def worker_pids(self) -> list[int]:
        """Process ids of the idle workers (for tests and diagnostics)."""
        with self._lock:
            return [pid for pool in self._idle for pid in pool.worker_pids()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, []
        for pool in pools:
            pool.close()

    def _new_pool(self) -> DecodePool:
        pool = DecodePool(1, timeout=self.timeout, memory_mb=self.memory_mb)
        pool.start()
        return pool
