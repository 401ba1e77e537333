"""A video's frames over time and a file's sound kept in files rather than in memory, between
the decode worker that makes them and the ingest that embeds them.

An hour of video at `every:1` is 3,600 frames of 150 KB: held in a list, pickled through the
worker's pipe and held again by the ingest, it would take gigabytes. Instead the worker writes
each frame's uint8 pixels to a raw file as it is picked (`FrameWriter`), and the `Decoded` that
crosses the pipe carries a `SpilledFrames`: the file's path, the frames' shape and their spans.
The ingest reads the frames back one at a time as its batcher takes them, and removes the file
once they are read (`discard`). The ingest's folder for these files (`spill_folder`) is removed
at the end of its run, whatever happened, with whatever a killed worker left in it.

A file's sound goes the same way (`SoundWriter`, `SpilledSound`): the worker writes the
waveform as it is decoded, and the ingest reads one window at a time, so that an hour of
sound (635 MB of float32 at 44.1 kHz) is held by neither process, nor pickled through the pipe.
The worker is given one stem per file; its frames go to STEM.frames and its sound to
STEM.sound (`spill_paths`).

Reading uses plain reads of one frame or window, not a memory map: the pages of a map that have been
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
from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np

if TYPE_CHECKING:
    from xsearch.ingest.decode import AudioWindow, Frame

FRAMES_SUFFIX = ".frames"
SOUND_SUFFIX = ".sound"
T = TypeVar("T")
W = TypeVar("W", bound="_SpillWriter")


def spill_paths(stem: str) -> tuple[str, str]:
    """The files a file's frames and its sound are spilled to, for the stem it was given."""
    return stem + FRAMES_SUFFIX, stem + SOUND_SUFFIX


def remove_spilled(stem: str | None) -> None:
    """Remove whatever was spilled for the stem `stem` (nothing there is fine)."""
    if stem is not None:
        for path in spill_paths(stem):
            remove_quietly(path)


class _SpilledItems(Sequence[T]):
    """A sequence of items read from the raw file at `path` when asked for (iterating reads
    one at a time): what both spill files share. Small and picklable: what crosses the
    worker's pipe instead of the pixels or samples."""

    path: str

    def _item(self, index: int, file) -> T:
        """Item `index` (0 <= index < len), read from `file` (seeking to it)."""
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} of {len(self)}")
        with open(self.path, "rb") as file:
            return self._item(index, file)

    def __iter__(self) -> Iterator[T]:
        with open(self.path, "rb") as file:
            for index in range(len(self)):
                yield self._item(index, file)

    def discard(self) -> None:
        """Remove the file (the items cannot be read after this); gone already is fine."""
        remove_quietly(self.path)


@dataclass(frozen=True)
class SpilledFrames(_SpilledItems["Frame"]):
    """A video's frames over time, in time order, in the raw uint8 file at `path`."""

    path: str
    shape: tuple[int, ...]  # of one frame's pixels: (size, size, 3)
    spans: tuple[tuple[float, float], ...]  # (start, end) of each frame, in seconds

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def _frame_bytes(self) -> int:
        return int(np.prod(self.shape))

    def _item(self, index: int, file) -> Frame:
        file.seek(index * self._frame_bytes)
        return self._frame(index, file)

    def _frame(self, index: int, file) -> Frame:
        from xsearch.ingest.decode import Frame

        pixels = np.fromfile(file, dtype=np.uint8, count=self._frame_bytes)
        if pixels.size != self._frame_bytes:  # truncated under us: a bug, not bad media
            raise OSError(f"{self.path}: frame {index} of {len(self)} is missing")
        start, end = self.spans[index]
        return Frame(start, end, pixels.reshape(self.shape))


class _SpillWriter:
    """Writes the raw file at `path` (created new). A context manager: a decode that fails
    half-way removes its partial file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "xb")  # noqa: SIM115 - closed by close() or __exit__

    def __enter__(self: W) -> W:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        self._file.close()
        if exc_type is not None:
            remove_quietly(self.path)


class FrameWriter(_SpillWriter):
    """Appends frames' uint8 pixels, all of one shape; `close` gives back what the file
    holds."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.shape: tuple[int, ...] | None = None
        self.starts: list[float] = []

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


@dataclass(frozen=True)
class SpilledSound(_SpilledItems["AudioWindow"]):
    """A file's audio windows, in order, over the raw float32 waveform at `path`. `bounds`
    are each window's [start, end) in samples at `sample_rate`."""

    path: str
    sample_rate: int
    bounds: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.bounds)

    def _item(self, index: int, file) -> AudioWindow:
        from xsearch.ingest.decode import AudioWindow

        start, end = self.bounds[index]
        file.seek(start * 4)
        wave = np.fromfile(file, dtype=np.float32, count=end - start)
        if wave.size != end - start:  # truncated under us: a bug, not bad media
            raise OSError(f"{self.path}: window {index} of {len(self)} is missing")
        return AudioWindow(start / self.sample_rate, end / self.sample_rate, wave)


class SoundWriter(_SpillWriter):
    """Appends float32 samples; `close` gives back the file's windows."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.samples = 0

    def append(self, samples: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(samples, dtype=np.float32).data)
        self.samples += len(samples)

    def close(self, sample_rate: int, bounds: Sequence[tuple[int, int]]) -> SpilledSound:
        """Finish the file: its windows of `bounds` (sample ranges within what it holds)."""
        self._file.close()
        if any(end > self.samples for _, end in bounds):
            raise ValueError(f"windows past the {self.samples} samples written")
        return SpilledSound(self.path, sample_rate, tuple((int(a), int(b)) for a, b in bounds))


def discard(items: object) -> None:
    """Remove the file of spilled frames or sound once they are read; in memory: nothing."""
    if isinstance(items, SpilledFrames | SpilledSound):
        items.discard()


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
    folder = tempfile.mkdtemp(prefix="xsearch-spill-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
