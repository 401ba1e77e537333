"""One writer at a time: an advisory lock the kernel releases when its process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from xsearch.errors import XSearchError


class IndexLocked(XSearchError):
    """Another process is writing this index."""


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._take(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def check(self) -> None:
        """IndexLocked now if another process holds the lock (taking and dropping it, writing
        nothing): lets a slow command fail before its slow start. Holding it is `acquire`'s job."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        self._take(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _take(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexLocked(
                f"{self.path.parent.name}: another process (pid {holder}) is writing this index; "
                "wait for it to finish"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
