"""A video's frames over time kept in a file rather than in memory, between the decode worker
that picks them and the ingest that embeds them.

An hour of video at `every:1` is 3,600 frames of 150 KB: held in a list, pickled through the
worker's pipe and held again by the ingest, it would take gigabytes. Instead the worker writes
each frame's uint8 pixels to a raw file as it is picked (`FrameWriter`), and the `Decoded` that
crosses the pipe carries a `SpilledFrames`: the file's path, the frames' shape and their spans.
The ingest reads the frames back one at a time as its batcher takes them, and removes the file
once they are read (`discard`). The ingest's folder for these files (`spill_folder`) is removed
at the end of its run, whatever happened, with whatever a killed worker left in it.

Reading uses plain reads of one frame, not a memory map: the pages of a map that have been
read stay in the process's resident memory until the map is closed, so reading a long video
through one would grow it by the whole file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    from xsearch.ingest.decode import Frame

SUFFIX = ".frames"


@dataclass(frozen=True)
class SpilledFrames(Sequence["Frame"]):
    """A video's frames over time, in time order, in the raw uint8 file at `path`: a sequence
    of `Frame`s read from the file when asked for (iterating reads one frame at a time).
    Small and picklable: what crosses the worker's pipe instead of the pixels."""

    path: str
    shape: tuple[int, ...]  # of one frame's pixels: (size, size, 3)
    spans: tuple[tuple[float, float], ...]  # (start, end) of each frame, in seconds

    def __len__(self) -> int:
        return len(self.spans)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        with open(self.path, "rb") as file:
            file.seek(index * self._frame_bytes)
            return self._frame(index, file)

    def __iter__(self) -> Iterator[Frame]:
        with open(self.path, "rb") as file:
            for index in range(len(self)):
                yield self._frame(index, file)

    def discard(self) -> None:
        """Remove the file (the frames cannot be read after this); gone already is fine."""
        remove_quietly(self.path)

    @property
    def _frame_bytes(self) -> int:
        return int(np.prod(self.shape))

    def _frame(self, index: int, file) -> Frame:
        from xsearch.ingest.decode import Frame

        pixels = np.fromfile(file, dtype=np.uint8, count=self._frame_bytes)
        if pixels.size != self._frame_bytes:  # truncated under us: a bug, not bad media
            raise OSError(f"{self.path}: frame {index} of {len(self)} is missing")
        start, end = self.spans[index]
        return Frame(start, end, pixels.reshape(self.shape))


class FrameWriter:
    """Appends frames' uint8 pixels, all of one shape, to the raw file at `path` (created
    new); `close` gives back what the file holds. Use as a context manager: a decode that
    fails half-way removes its partial file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shape: tuple[int, ...] | None = None
        self.starts: list[float] = []
        self._file = open(path, "xb")  # noqa: SIM115 - closed by close() or __exit__

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        self._file.close()
        if exc_type is not None:
            remove_quietly(self.path)

    def append(self, seconds: float, pixels: np.ndarray) -> None:
        if pixels.dtype != np.uint8:
            raise ValueError(f"frames are spilled as uint8, got {pixels.dtype}")
        if self.shape is None:
            self.shape = pixels.shape
        elif pixels.shape != self.shape:
            raise ValueError(f"a frame of shape {pixels.shape} among frames of {self.shape}")
        self._file.write(np.ascontiguousarray(pixels).data)
        self.starts.append(seconds)

    def close(self, spans: Sequence[tuple[float, float]]) -> SpilledFrames:
        """Finish the file: its frames, with `spans` (one per frame appended)."""
        self._file.close()
        if len(spans) != len(self.starts) or self.shape is None:
            raise ValueError(f"{len(spans)} spans for {len(self.starts)} frames")
        return SpilledFrames(self.path, tuple(self.shape), tuple(spans))


def discard(frames: object) -> None:
    """Remove the file of spilled frames once they are read; frames in memory: nothing."""
    if isinstance(frames, SpilledFrames):
        frames.discard()


def remove_quietly(path: str | None) -> None:
    """Remove a spill file, if it is there."""
    if path is not None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


@contextmanager
def spill_folder() -> Iterator[str]:
    """A new temporary folder for one run's spill files, removed with its content on leaving,
    also on an error or an interrupt."""
    folder = tempfile.mkdtemp(prefix="xsearch-frames-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
