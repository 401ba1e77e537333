"""Refusing FAISS files that would make FAISS exhaust memory, before and while it reads them.

The store checks every FAISS file against the sha256 its manifest records before loading it,
so a damaged file never gets this far through the store. These checks are the second line,
for a hostile index directory whose manifest was forged along with the file. FAISS reads each
array's length from the file and allocates (and zeroes) that much before reading it: a 1 kB
file that claims a 100 GB array costs 100 GB before the read fails.

- `check_index_file` reads the headers only: sane `d` and `ntotal`, an id map (IndexIDMap2,
  IndexIDMap) whose length fits the file, and for flat indexes the exact file length that `d`
  and `ntotal` imply.
- `load_guarded` then deserialises with FAISS's own limits set to the file's size: no single
  array may be larger than the file, nor a loop count (nlist, ...) larger than its bytes; an
  honest file never comes near either. A FAISS without these limits (before 1.13) instead
  loads any file the header check cannot fully vouch for once in a child process capped with
  RLIMIT_AS.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar

T = TypeVar("T")

MAX_DIM = 1 << 20  # FAISS's own bound on d
WRAPPERS = (b"IxM2", b"IxMp")  # IndexIDMap2, IndexIDMap: header, inner index, then the ids
FLATS = (b"IxFI", b"IxF2", b"IxFl")  # IndexFlat (IP, L2, other metric): header, then vectors
_HEAD = 256  # bytes read for the headers
_LIMITS = threading.Lock()  # FAISS's limits are process-wide


class UnsafeIndexFile(ValueError):
    """The file is not a FAISS index FAISS could load within bounded memory."""


class _Header(NamedTuple):
    fourcc: bytes
    d: int
    ntotal: int
    end: int  # offset just past the header


def _header(head: bytes, at: int, size: int) -> _Header:
    # fourcc, d (int32), ntotal (int64), two unused int64, is_trained (uint8), metric (int32)
    if len(head) < at + 37:
        raise UnsafeIndexFile("truncated header")
    fourcc = head[at : at + 4]
    d, ntotal = struct.unpack_from("<iq", head, at + 4)
    (metric,) = struct.unpack_from("<i", head, at + 33)
    end = at + 37 + (4 if metric > 1 else 0)  # a metric argument follows for exotic metrics
    if not (0 < d <= MAX_DIM):
        raise UnsafeIndexFile(f"dimension {d} out of range")
    if not (0 <= ntotal <= size):
        raise UnsafeIndexFile(f"{ntotal} vectors cannot fit in {size} bytes")
    return _Header(fourcc, d, ntotal, end)


def check_index_file(path: Path) -> bool:
    """Raise UnsafeIndexFile when the headers of the FAISS file at `path` are impossible for
    its size. True when the whole layout was checked (flat indexes), False when only the
    headers and the id map were."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        outer = _header(head, 0, size)
        if outer.fourcc in FLATS:
            return _check_flat(f, outer, size)
        if outer.fourcc not in WRAPPERS:
            return False
        ids_at = size - 8 * outer.ntotal - 8  # the id map ends the file
        if ids_at < outer.end:
            raise UnsafeIndexFile(f"{outer.ntotal} ids cannot fit in {size} bytes")
        f.seek(ids_at)
        if struct.unpack("<Q", f.read(8))[0] != outer.ntotal:
            raise UnsafeIndexFile(f"the id map does not hold the {outer.ntotal} ids announced")
        # The inner index's vectors may live outside this file (IVF lists on disk), so its
        # count is bounded by the id map's, checked above, not by its own bytes.
        inner = _header(head, outer.end, size)
        if (inner.d, inner.ntotal) != (outer.d, outer.ntotal):
            raise UnsafeIndexFile("the inner index disagrees with its id map on d or ntotal")
        return _check_flat(f, inner, ids_at) if inner.fourcc in FLATS else False


def _check_flat(f, header: _Header, end: int) -> bool:
    """A flat index is its header, a length, then exactly ntotal * d floats up to `end`."""
    f.seek(header.end)
    raw = f.read(8)
    if len(raw) < 8:
        raise UnsafeIndexFile("truncated vector array")
    (count,) = struct.unpack("<Q", raw)
    if count != header.ntotal * header.d or header.end + 8 + 4 * count != end:
        raise UnsafeIndexFile(
            f"its vector array ({count} floats) does not match {header.ntotal} vectors of "
            f"dimension {header.d} in {end} bytes"
        )
    return True


def load_guarded(path: Path, load: Callable[[], T]) -> T:
    """`load()` (which deserialises the FAISS file at `path`) after `check_index_file`, within
    memory bounded by the file's size; UnsafeIndexFile with FAISS's reason when it fails."""
    complete = check_index_file(path)
    size = path.stat().st_size
    try:
        with _bounded(size) as limited:
            if not (limited or complete):
                _trial_load(path, size)
            return load()
    except (RuntimeError, MemoryError) as e:
        raise UnsafeIndexFile(_faiss_reason(e)) from None


@contextmanager
def _bounded(size: int):
    """Within: FAISS refuses arrays larger than `size` bytes and loops longer than `size`.
    Yields whether this FAISS has such limits."""
    import faiss

    names = ("vector_byte_limit", "loop_limit")
    getters = [getattr(faiss, f"get_deserialization_{n}", None) for n in names]
    setters = [getattr(faiss, f"set_deserialization_{n}", None) for n in names]
    if None in getters or None in setters:
        yield False
        return
    bound = max(size, 1 << 16)
    with _LIMITS:
        before = [get() for get in getters]
        for set_limit in setters:
            set_limit(bound)
        try:
            yield True
        finally:
            for set_limit, value in zip(setters, before):
                set_limit(value)


# Deserialise the file in a child whose address space is capped: exit 0 when it loads.
_TRIAL = (
    "import json, os, resource, sys; sys.path[:] = json.loads(sys.argv[1]); import faiss; "
    "mapped = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE'); "
    "resource.setrlimit(resource.RLIMIT_AS, (mapped + int(sys.argv[3]), "
    "resource.RLIM_INFINITY)); faiss.read_index(sys.argv[2])"
)


def _trial_load(path: Path, size: int) -> None:
    """Load the file once in a child process allowed four times its size plus 256 MB (a
    FAISS without deserialisation limits); UnsafeIndexFile when the child fails."""
    allowed = 4 * size + (256 << 20)
    child = subprocess.run(
        [sys.executable, "-c", _TRIAL, json.dumps(sys.path), os.fspath(path), str(allowed)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        last = lines[-1] if lines else f"exit status {child.returncode}"
        raise UnsafeIndexFile(f"it does not load within {allowed >> 20} MB ({last[:200]})")


def _faiss_reason(error: BaseException) -> str:
    """FAISS's message without its C++ location: what failed, on one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, MemoryError):
        return f"FAISS ran out of memory loading it ({text})"
    text = text.split(" Error: ", 1)[-1]  # after "Error in <function> at <file>:<line>:"
    if "deserialization" in text:
        return f"an array or count larger than the file allows ({text[:160]})"
    return f"FAISS: {text[:200]}"
