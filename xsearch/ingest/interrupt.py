"""Ctrl-C during an ingest: the first interrupt (SIGINT or SIGTERM) stops it at the next file
boundary, so that what is embedded is published; the second stops it at once.

Raising KeyboardInterrupt wherever the signal lands could leave a file half added (ids given
out, vectors not yet back); a flag checked between files cannot. The one place where the
ingest may wait for long, for the next decoded file, is marked with `waiting()`: there the
first interrupt raises `StopRequested` at once rather than waiting for the file.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """The first interrupt, while the ingest waited (see `GracefulStop.waiting`)."""


class GracefulStop:
    """Use as a context manager around the part of an ingest that embeds: `requested` turns
    True on the first interrupt; the second raises KeyboardInterrupt. Handlers are installed
    only in the main thread (Python delivers signals there); elsewhere this does nothing and
    Ctrl-C goes to whoever handles it there."""

    def __init__(self) -> None:
        self.requested = False
        self._waiting = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait that the first interrupt ends at once, with StopRequested."""
        if self.requested:
            raise StopRequested
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested:  # the second interrupt: stop now (a commit is atomic)
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        if self._waiting:
            raise StopRequested

    def _restore(self) -> None:
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler)
